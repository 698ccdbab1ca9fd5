"""The dashboard's sign-in, refusals and anti-forgery codes with the in-memory state (fast; the browser tests in
tests/e2e/test_dashboard_browser.py run the same pages through Chromium)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.templates import DashboardTemplates
from shared.domain.dashboard import (
    OPERATOR,
    READER,
    client_principal_header,
    dev_principal,
    form_code,
    form_code_ok,
    parse_client_principal,
)
from shared.domain.stale import StalePolicy
from shared.services.dashboard import (
    DashboardConfig,
    DashboardDeps,
    DashboardRequest,
    handle_dashboard,
)
from shared.settings import Feature, SettingsError, load_settings
from tests.fakes.state import MemoryStateStore

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
KEY = "dashboard-test-key-0123456789abcdef0123"
BASE = "https://guestwarden.example.net"


class NoNames:
    async def names(self, user_ids: list[str]) -> dict[str, str]:
        return {}


async def _no_restore(run_id: str, actor: str) -> list:  # type: ignore[type-arg]
    raise AssertionError("a refused request must not act")


def deps(**config: object) -> DashboardDeps:
    return DashboardDeps(
        state=MemoryStateStore(),
        templates=DashboardTemplates(),
        names=NoNames(),
        config=DashboardConfig(KEY, BASE, **config),  # type: ignore[arg-type]
        policy=StalePolicy(),
        clock=lambda: NOW,
        restore_run=_no_restore,
    )


def get(path: str = "", header: str | None = None) -> DashboardRequest:
    headers = {"X-MS-CLIENT-PRINCIPAL": header} if header else {}
    return DashboardRequest("GET", path, {}, {}, headers)


async def test_without_a_principal_401_without_a_role_403_with_one_200() -> None:
    assert (await handle_dashboard(get(), deps())).status == 401
    nobody = client_principal_header("visitor@contoso.com", [])
    assert (await handle_dashboard(get("", nobody), deps())).status == 403
    reader = client_principal_header("reader@contoso.com", [READER])
    page = await handle_dashboard(get("", reader), deps())
    assert page.status == 200 and b"reader@contoso.com" in page.body
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]


async def test_a_reader_cannot_open_an_actions_confirm_page_an_operator_can() -> None:
    params = {"action": "restore-run", "target": "run-1"}
    reader = client_principal_header("reader@contoso.com", [READER])
    operator = client_principal_header("op@contoso.com", [OPERATOR])
    refused = await handle_dashboard(
        DashboardRequest("GET", "confirm", params, {}, {"X-MS-CLIENT-PRINCIPAL": reader}), deps()
    )
    assert refused.status == 403
    shown = await handle_dashboard(
        DashboardRequest("GET", "confirm", params, {}, {"X-MS-CLIENT-PRINCIPAL": operator}), deps()
    )
    assert shown.status == 200 and b'id="confirm"' in shown.body


async def test_in_azure_without_app_service_authentication_nothing_is_served() -> None:
    operator = client_principal_header("op@contoso.com", [OPERATOR])
    assert (await handle_dashboard(get("", operator), deps(platform_auth_missing=True))).status == 503


async def test_the_development_principal_signs_in_only_requests_without_one() -> None:
    config = {"dev_principal": dev_principal(f"dev@contoso.com:{READER}")}
    assert (await handle_dashboard(get(), deps(**config))).status == 200
    nobody = client_principal_header("visitor@contoso.com", [])
    assert (await handle_dashboard(get("", nobody), deps(**config))).status == 403


def test_the_development_sign_in_is_refused_in_azure() -> None:
    env = {
        "DASHBOARD_SIGNING_KEY": KEY,
        "DASHBOARD_BASE_URL": BASE,
        "DASHBOARD_DEV_SIGNIN": f"dev@contoso.com:{OPERATOR}",
        "WEBSITE_SITE_NAME": "guestwarden-prod",
    }
    with pytest.raises(SettingsError) as refused:
        load_settings(env, (Feature.GRAPH,))
    assert "DASHBOARD_DEV_SIGNIN" in str(refused.value) and "WEBSITE_SITE_NAME" in str(refused.value)
    without_azure = {k: v for k, v in env.items() if k != "WEBSITE_SITE_NAME"}
    assert load_settings(without_azure, (Feature.GRAPH,)).dashboard.dev_signin


@pytest.mark.parametrize("header", ["", "not base64 at all!", base64.b64encode(b"[1,2]").decode(), "A" * 20000])
def test_a_malformed_principal_header_is_no_principal(header: str) -> None:
    assert parse_client_principal(header) is None


def test_the_principal_header_carries_name_and_roles() -> None:
    principal = parse_client_principal(client_principal_header("op@contoso.com", [OPERATOR], "oid-1"))
    assert principal is not None and principal.can_act and principal.can_read
    assert principal.actor == "operator:op@contoso.com"
    decoded = json.loads(base64.b64decode(client_principal_header("r@contoso.com", [READER])))
    assert {"typ": "roles", "val": READER} in decoded["claims"]


def test_anti_forgery_codes_bind_the_operator_action_target_and_time() -> None:
    alice = parse_client_principal(client_principal_header("alice@contoso.com", [OPERATOR], "a"))
    bob = parse_client_principal(client_principal_header("bob@contoso.com", [OPERATOR], "b"))
    assert alice and bob
    code = form_code(KEY, alice, "restore-run", "run-1", NOW)
    assert form_code_ok(KEY, code, alice, "restore-run", "run-1", NOW + timedelta(minutes=5))
    assert not form_code_ok(KEY, code, bob, "restore-run", "run-1", NOW)
    assert not form_code_ok(KEY, code, alice, "keep-guest", "run-1", NOW)
    assert not form_code_ok(KEY, code, alice, "restore-run", "run-2", NOW)
    assert not form_code_ok(KEY, code, alice, "restore-run", "run-1", NOW + timedelta(hours=2))
    assert not form_code_ok("another-key-0123456789abcdef0123456789", code, alice, "restore-run", "run-1", NOW)


async def test_only_the_listed_static_files_are_served() -> None:
    for path in ("static/../services/dashboard.py", "static/vendor/../../settings/core.py", "static/nope.js"):
        assert (await handle_dashboard(get(path), deps())).status == 404
    served = await handle_dashboard(get("static/dashboard.js"), deps())
    assert served.status == 200 and served.content_type.startswith("text/javascript")
