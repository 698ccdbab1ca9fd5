"""Settings: typed, validated once, one error naming every problem, docs in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Feature, SettingsError, load_settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
SB = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=very-secret;UseDevelopmentEmulator=true;"


def test_defaults_are_production_safe() -> None:
    settings = load_settings({}, features=[Feature.GRAPH])
    assert settings.graph.base_url == "https://graph.microsoft.com/v1.0"
    assert settings.graph.auth == "managed-identity"
    assert settings.state.backend == "sqlite"


def test_one_error_names_every_bad_setting_and_what_it_expects() -> None:
    env = {
        "GRAPH_BASE_URL": "http://graph.example.com/v1.0",
        "GRAPH_MAX_RETRIES": "lots",
        "GRAPH_PAGE_SIZE": "5000",
        "AZURE_CLIENT_ID": "not-a-guid",
        "STATE_BACKEND": "table",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env, features=[Feature.GRAPH, Feature.STATE, Feature.QUEUE])
    text = str(caught.value)
    for name in ("GRAPH_BASE_URL", "GRAPH_MAX_RETRIES", "GRAPH_PAGE_SIZE", "AZURE_CLIENT_ID", "STATE_TABLE_CONNECTION"):
        assert name in text
    assert "SERVICEBUS_CONNECTION" in text  # the queue feature was asked for and has no connection
    assert "loopback" in text and "GUID" in text and "999" in text
    assert len(caught.value.problems) == 6


def test_secrets_are_never_echoed_in_errors() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"SERVICEBUS_CONNECTION": SB, "GRAPH_TIMEOUT_SECONDS": "-1", "STATE_TABLE_PREFIX": "bad-name!"})
    assert "very-secret" not in str(caught.value)
    assert "GRAPH_TIMEOUT_SECONDS" in str(caught.value)


def test_local_token_only_for_a_loopback_graph() -> None:
    with pytest.raises(SettingsError, match="GRAPH_AUTH: local-token is refused"):
        load_settings({"GRAPH_AUTH": "local-token"}, features=[Feature.GRAPH])
    ok = load_settings(
        {"GRAPH_AUTH": "local-token", "GRAPH_BASE_URL": "http://127.0.0.1:5001/v1.0/"}, features=[Feature.GRAPH]
    )
    assert ok.graph.base_url == "http://127.0.0.1:5001/v1.0"  # trailing slash dropped: the SDK would double it


@pytest.mark.parametrize(
    "url", ["ftp://graph.microsoft.com/v1.0", "graph.microsoft.com/v1.0", "https://graph.microsoft.com"]
)
def test_graph_base_url_must_be_an_absolute_versioned_url(url: str) -> None:
    with pytest.raises(SettingsError, match="GRAPH_BASE_URL"):
        load_settings({"GRAPH_BASE_URL": url}, features=[Feature.GRAPH])


def test_features_decide_what_is_required() -> None:
    load_settings({}, features=[Feature.GRAPH, Feature.STATE])  # sqlite needs nothing
    with pytest.raises(SettingsError, match="SERVICEBUS_CONNECTION"):
        load_settings({}, features=[Feature.QUEUE])
    settings = load_settings(
        {"SERVICEBUS_CONNECTION__FULLYQUALIFIEDNAMESPACE": "gw.servicebus.windows.net"}, features=[Feature.QUEUE]
    )
    assert settings.servicebus.namespace == "gw.servicebus.windows.net"  # names are case-insensitive
    with pytest.raises(SettingsError, match="host name"):
        load_settings(
            {"SERVICEBUS_CONNECTION__fullyQualifiedNamespace": "sb://gw.servicebus.windows.net/"},
            features=[Feature.QUEUE],
        )


def test_flow_features_name_what_they_need() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({}, features=[Feature.WEBHOOK, Feature.SUBSCRIPTION, Feature.LICENSING, Feature.ALERTS])
    text = str(caught.value)
    for name in (
        "GRAPH_CLIENT_STATE",
        "GRAPH_NOTIFICATION_URL",
        "LICENSE_SKU",
        "DEFAULT_USAGE_LOCATION",
        "MAIL_SENDER",
    ):
        assert name in text
    with pytest.raises(SettingsError, match="LICENSE_GROUP_ID: required when LICENSE_MODE=group"):
        load_settings({"LICENSE_MODE": "group"}, features=[Feature.LICENSING])


def test_licensing_values_are_parsed_and_checked() -> None:
    settings = load_settings(
        {
            "LICENSE_SKU": "GUEST_ACCESS",
            "DEFAULT_USAGE_LOCATION": "us",
            "USAGE_LOCATION_BY_DOMAIN": "Fabrikam.com=de, tailspin.co.uk=GB",
            "LICENSE_EXCLUDED_DOMAINS": "WoodgroveBank.com,",
            "ADMIN_ALERT_RECIPIENTS": "ops@contoso.com, it@contoso.com",
        },
        features=[Feature.LICENSING],
    )
    assert settings.licensing.default_usage_location == "US"
    assert settings.licensing.usage_location_by_domain == {"fabrikam.com": "DE", "tailspin.co.uk": "GB"}
    assert settings.licensing.excluded_domains == frozenset({"woodgrovebank.com"})
    assert settings.mail.alert_recipients == ("ops@contoso.com", "it@contoso.com")
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {
                "DEFAULT_USAGE_LOCATION": "USA",
                "USAGE_LOCATION_BY_DOMAIN": "fabrikam.com:DE",
                "LICENSE_DISABLED_PLANS": "EXCHANGE_S_STANDARD",
                "GRAPH_CLIENT_STATE": "short",
                "GRAPH_NOTIFICATION_URL": "http://contoso.example/api/graph/notifications?code=k",
                "DELTA_SCHEDULE": "*/15 * * * *",
            },
            features=[Feature.GRAPH],
        )
    names = {p.split(":")[0] for p in caught.value.problems}
    assert names == {
        "DEFAULT_USAGE_LOCATION",
        "USAGE_LOCATION_BY_DOMAIN",
        "LICENSE_DISABLED_PLANS",
        "GRAPH_CLIENT_STATE",
        "GRAPH_NOTIFICATION_URL",
        "DELTA_SCHEDULE",
    }
    assert "code=k" not in str(caught.value)  # the function key in the URL is a secret


def test_blank_values_count_as_unset() -> None:
    settings = load_settings({"GRAPH_BASE_URL": "  ", "AZURE_CLIENT_ID": ""}, features=[Feature.GRAPH])
    assert settings.graph.base_url == "https://graph.microsoft.com/v1.0"
    assert settings.azure_client_id is None


def test_docs_settings_table_is_generated_from_the_code() -> None:
    from tools.write_docs import render_configuration

    docs = (ROOT / "docs" / "configuration.md").read_text()
    assert render_configuration(docs) == docs, "docs/configuration.md is stale: run `make docs`"
    for row in settings_table():
        assert f"| `{row.name}` |" in docs


def test_example_local_settings_are_valid_for_the_local_world() -> None:
    import json

    values = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    settings = load_settings(values)
    assert settings.graph.auth == "local-token"


def test_each_flow_builds_its_own_policy_from_the_flat_app_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import Settings

    monkeypatch.setenv("stale_pending_days", "45")  # names are case-insensitive, as in Azure
    monkeypatch.setenv("STALE_EXCLUDE_DOMAINS", "Fabrikam.com, ")
    monkeypatch.setenv("GRAPH_PAGE_SIZE", "500")
    settings = Settings()  # pydantic-settings: the process environment, flat names
    assert settings.stale.policy().pending_days == 45
    assert settings.stale.policy().exclude_domains == frozenset({"fabrikam.com"})
    assert settings.graph.config().page_size == 500
    assert settings.value("STALE_PENDING_DAYS") == 45


def test_the_docs_table_says_which_feature_needs_a_setting() -> None:
    rows = {row.name: row for row in settings_table()}
    assert rows["LICENSE_GROUP_ID"].needed_by == "licensing when LICENSE_MODE=group"
    assert rows["GRAPH_CLIENT_STATE"].secret and not rows["GRAPH_BASE_URL"].secret
