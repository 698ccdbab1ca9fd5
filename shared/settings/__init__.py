"""Every app setting guestwarden reads, typed, validated once at start (pydantic-settings).

- `core`: the root `Settings` (one sub-model per flow), `Feature`s and what each needs, `load_settings`.
- `sections`: the sub-models, each turning itself into its flow's policy/config object.
- `types`: reusable annotated types (Guid, DomainName, Mailbox, CommaList, NCrontab ...).
- `docs`: docs/configuration.md's table, generated from the models.

App-setting names are those of Azure, flat (e.g. STALE_PENDING_DAYS); see docs/configuration.md.
"""

from shared.settings.core import (
    REQUIREMENTS,
    UNRESOLVED_REFERENCE,
    Feature,
    Requirement,
    Settings,
    SettingsError,
    app_setting_values,
    load_settings,
    setting_fields,
)
from shared.settings.docs import SettingDoc, settings_markdown, settings_table
from shared.settings.sections import (
    GRAPH_DEFAULT_SCOPE,
    GRAPH_PUBLIC_CLOUD,
    DeltaSettings,
    GraphSettings,
    LicensingSettings,
    MailSettings,
    ObservabilitySettings,
    PostureSettings,
    ReportSettings,
    RiskSettings,
    ServiceBusSettings,
    StaleSettings,
    StateSettings,
    SubscriptionSettings,
    reveal,
)
from shared.settings.types import is_loopback_url

__all__ = [
    "GRAPH_DEFAULT_SCOPE",
    "GRAPH_PUBLIC_CLOUD",
    "REQUIREMENTS",
    "UNRESOLVED_REFERENCE",
    "DeltaSettings",
    "Feature",
    "GraphSettings",
    "LicensingSettings",
    "MailSettings",
    "ObservabilitySettings",
    "PostureSettings",
    "ReportSettings",
    "Requirement",
    "RiskSettings",
    "ServiceBusSettings",
    "SettingDoc",
    "Settings",
    "SettingsError",
    "StaleSettings",
    "StateSettings",
    "SubscriptionSettings",
    "app_setting_values",
    "is_loopback_url",
    "load_settings",
    "reveal",
    "setting_fields",
    "settings_markdown",
    "settings_table",
]
