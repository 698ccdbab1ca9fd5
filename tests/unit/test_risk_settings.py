"""The risk feature's settings: what it requires, and the errors an operator gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import Feature, SettingsError, load_settings


def test_risk_needs_the_sender_mailbox() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({}, [Feature.RISK])
    assert any(p.startswith("MAIL_SENDER: required") for p in caught.value.problems)


def test_risk_defaults_and_values() -> None:
    settings = load_settings(
        {"MAIL_SENDER": "guestwarden@contoso.com", "RISK_QUIET_MINUTES": "90", "RISK_NOTICE_FORMAT": "text"},
        [Feature.RISK],
    )
    assert (settings.risk.poll_schedule, settings.risk.lookback_minutes) == ("0 */5 * * * *", 120)
    assert (settings.risk.quiet_minutes, settings.risk.notice_format) == (90, "text")
    assert settings.risk.partner_directory is None


def test_bad_risk_settings_are_named_together() -> None:
    env = {
        "MAIL_SENDER": "guestwarden@contoso.com",
        "RISK_POLL_SCHEDULE": "*/5 * * * *",
        "RISK_LOOKBACK_MINUTES": "1",
        "RISK_NOTICE_FORMAT": "pdf",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env, [Feature.RISK])
    names = {p.split(":")[0] for p in caught.value.problems}
    assert {"RISK_POLL_SCHEDULE", "RISK_LOOKBACK_MINUTES", "RISK_NOTICE_FORMAT"} <= names


def test_the_partner_directory_is_validated_with_the_settings_and_its_secrets_resolved(tmp_path: Path) -> None:
    path = tmp_path / "partners.json"
    path.write_text(
        json.dumps(
            {
                "partners": [
                    {
                        "name": "Wingtip",
                        "domains": ["wingtiptoys.com"],
                        "sink": {"type": "webhook", "url": "https://t.wingtiptoys.com/h", "secretSetting": "WT_KEY"},
                    }
                ],
                "default": {"type": "email", "to": ["servicedesk@contoso.com"]},
            }
        )
    )
    env = {"MAIL_SENDER": "guestwarden@contoso.com", "RISK_PARTNER_DIRECTORY": str(path), "WT_KEY": "k" * 32}
    settings = load_settings(env, [Feature.RISK])
    assert settings.risk.partners is not None
    partner = settings.risk.partners.resolve(None, "WingtipToys.com")
    assert partner.name == "Wingtip" and partner.sink.signing_key() == b"k" * 32
    assert "k" * 32 not in repr(settings)  # the signing key is a secret
    assert load_settings(env, [Feature.GRAPH]).risk.partners is None  # read only for the risk feature

    with pytest.raises(SettingsError) as caught:
        load_settings(env | {"WT_KEY": ""}, [Feature.RISK])
    assert caught.value.problems == [
        "RISK_PARTNER_DIRECTORY: partners[0].sink.secretSetting: app setting WT_KEY is not set"
    ]
