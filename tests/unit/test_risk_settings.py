"""The risk feature's settings: what it requires, and the errors an operator gets."""

from __future__ import annotations

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
