"""Identity and configuration: invalid settings refused at start with every problem named (and no secret echoed),
the clientState compared in constant time, the webhook route behind the function key."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

import functions.notifications
from shared.domain import notifications
from shared.settings import Feature, SettingsError, load_settings
from tests.fixtures.hypothesis_profile import count_case

ROOT = Path(__file__).resolve().parents[2]
SECRET_SB = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=sb-key-do-not-log-0001"
GOOD = {
    "SERVICEBUS_CONNECTION": SECRET_SB,
    "GRAPH_CLIENT_STATE": "client-state-do-not-log-0123456789",
    "GRAPH_NOTIFICATION_URL": "https://fn.example.net/api/graph/notifications?code=fn-key-do-not-log-0001",
}
BAD: dict[str, str] = {
    "GRAPH_BASE_URL": "http://graph.evil.example/v1.0",
    "GRAPH_MAX_RETRIES": "lots",
    "GRAPH_PAGE_SIZE": "5000",
    "GRAPH_TIMEOUT_SECONDS": "-1",
    "AZURE_CLIENT_ID": "not-a-guid",
    "GRAPH_AUTH": "password",
    "STATE_BACKEND": "postgres",
    "LICENSE_MODE": "everyone",
    "RISK_NOTICE_FORMAT": "pdf",
    "STALE_DRY_RUN": "perhaps",
    "STALE_MAX_ACTIONS": "many",
    "STALE_INACTIVE_DAYS": "ninety",
    "REPORT_STORE": "ftp",
    "DELTA_FIRST_RUN": "sometimes",
    "SUBSCRIPTION_LIFETIME_MINUTES": "forever",
}
"""Settings with a value that can never be valid, whatever else is set."""


@given(st.sets(st.sampled_from(sorted(BAD)), min_size=1))
def test_every_invalid_setting_is_named_in_one_refusal_and_no_secret_is_echoed(bad: set[str]) -> None:
    count_case("settings: combinations of invalid values")
    env = {**GOOD, **{name: BAD[name] for name in bad}}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    text = str(caught.value)
    for name in bad:
        assert name in text, (name, text)
    for secret in ("sb-key-do-not-log-0001", "client-state-do-not-log", "fn-key-do-not-log-0001"):
        assert secret not in text


def test_a_short_client_state_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**GOOD, "GRAPH_CLIENT_STATE": "abc"}, features=[Feature.WEBHOOK])
    assert "GRAPH_CLIENT_STATE" in str(caught.value) and "'abc'" not in str(caught.value)


def test_client_state_is_compared_in_constant_time() -> None:
    """The comparison goes through hmac.compare_digest (no early exit on the first differing byte)."""
    tree = ast.parse(inspect.getsource(notifications.client_state_matches))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare) and any(isinstance(o, ast.Eq) for o in n.ops)]
    assert compares == []  # no `==` on the secret
    verify_source = inspect.getsource(notifications.verify)
    assert "client_state_matches(" in verify_source and "== client_state" not in verify_source
    assert notifications.client_state_matches("s3cret", "s3cret")
    assert not notifications.client_state_matches("s3cre", "s3cret")
    assert not notifications.client_state_matches(None, "s3cret")


def test_the_webhook_route_requires_the_function_key() -> None:
    """The HTTP triggers are the Graph webhook, declared with AuthLevel.FUNCTION (the e2e test in
    tests/reliability proves the local host refuses it without ?code=); the sponsors' attestation page, anonymous
    because its signed token is the credential (tests/unit/test_attestation.py); and the operator dashboard,
    anonymous at the Functions level because App Service Authentication stands in front of it and the service
    requires an app role (tests/e2e/test_dashboard_browser.py: 401/403 without one, 503 in Azure without the
    platform's sign-in)."""
    import function_app

    app = function_app.build_app()
    http = [f for f in app.get_functions() if (t := f.get_trigger()) and t.get_binding_name() == "httpTrigger"]
    levels = {f.get_function_name(): cast(Any, f.get_trigger()).auth_level.name for f in http}
    assert levels == {"graph_notifications": "FUNCTION", "attest": "ANONYMOUS", "dashboard": "ANONYMOUS"}
    assert "AuthLevel.FUNCTION" in inspect.getsource(functions.notifications)
