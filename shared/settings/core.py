"""Settings: the root model on pydantic-settings, what each feature needs, and `load_settings`.

Azure Functions hands app settings to the worker as environment variables; locally they come from
local.settings.json (`Values`) or the shell. `load_settings()` reads them once and either returns a frozen
`Settings` or raises ONE `SettingsError` that names every bad or missing setting and says what it expects,
so an operator fixes a deployment in one pass instead of one redeploy per typo.

Settings are grouped by the feature that needs them (`Feature`): the CLI's `guests` needs only Graph, the
function app needs everything. A feature's required settings (`REQUIREMENTS`) are checked only when that
feature is asked for.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.settings.partners import SETTING as PARTNERS_SETTING
from shared.settings.partners import PartnerDirectoryError, load_partner_directory
from shared.settings.sections import (
    GRAPH_PUBLIC_CLOUD,
    DashboardSettings,
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
)
from shared.settings.types import Guid, is_loopback_url


class Feature(enum.StrEnum):
    """What a process is about to do; decides which settings must be present."""

    GRAPH = "graph"
    STATE = "state"
    QUEUE = "queue"
    WEBHOOK = "webhook"
    """Receives Graph change notifications: needs the clientState secret."""
    SUBSCRIPTION = "subscription"
    """Creates and renews the /users subscription: needs the public notification URL and the clientState."""
    LICENSING = "licensing"
    """Licenses accepted guests: needs the SKU (and a default usage location) or the licensing group."""
    ALERTS = "alerts"
    """Mails admins (e.g. no free seats): needs the sender mailbox and the recipients."""
    RISK = "risk"
    """Risk-blocked guests (flows 2/3): polls sign-ins, mails the guest, opens home-tenant tickets."""
    STALE = "stale"
    """The stale-guest sweep (flow 4): warns, disables, deletes; a real run (STALE_DRY_RUN=false) needs the
    sender mailbox, because sponsors must be told before anything is taken away."""
    INVENTORY = "inventory"
    """The operator's guest inventory (`guestwarden guests`): reads licences and sign-in activity; no settings."""
    POSTURE = "posture"
    """The guest posture checks (`guestwarden posture`, the nightly posture timer): read-only tenant settings,
    Conditional Access, role holders, licences; a check whose read is refused shows `unknown`."""


class SettingsError(ValueError):
    """One error for every bad setting, each line naming the setting and what it expects."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = sorted(set(problems))
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"guestwarden cannot start: {count} setting(s) need attention:\n{lines}")


# --- the root model ----------------------------------------------------------------------------------------

_SOURCE: ContextVar[Mapping[str, str] | None] = ContextVar("guestwarden_settings_source", default=None)


class _FlatAppSettings(PydanticBaseSettingsSource):
    """Flat app settings (GRAPH_BASE_URL, STALE_DRY_RUN ...) sorted into the sub-models by their aliases.

    Azure's names stay flat (no nested `__` names): each sub-model's aliases pick their own settings. Reads the
    mapping `load_settings` hands in, else the process environment; names match case-insensitively, blank
    values count as unset.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        source = _SOURCE.get()
        values = app_setting_values(os.environ if source is None else source)
        nested: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            model = field.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                own = {alias: values[alias] for alias in _aliases(model) if alias in values}
                if own:
                    nested[name] = own
            elif field.alias in values:
                nested[field.alias] = values[field.alias]
        return nested


class Settings(BaseSettings):
    """The validated settings, one sub-model per flow. `Settings()` reads the process environment;
    `load_settings(env, features)` is the entry point that also checks what the features need."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", str_strip_whitespace=True)

    azure_client_id: Guid | None = Field(
        None,
        alias="AZURE_CLIENT_ID",
        description="Client id of the user-assigned managed identity; empty = system-assigned.",
    )
    graph: GraphSettings = GraphSettings()
    state: StateSettings = StateSettings()
    servicebus: ServiceBusSettings = ServiceBusSettings()
    subscriptions: SubscriptionSettings = SubscriptionSettings()
    delta: DeltaSettings = DeltaSettings()
    licensing: LicensingSettings = LicensingSettings()
    mail: MailSettings = MailSettings()
    risk: RiskSettings = RiskSettings()
    stale: StaleSettings = StaleSettings()
    reports: ReportSettings = ReportSettings()
    posture: PostureSettings = PostureSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    dashboard: DashboardSettings = DashboardSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FlatAppSettings(settings_cls))

    def value(self, name: str) -> object:
        """A setting's value by its app-setting name (e.g. "LICENSE_MODE"), wherever it is declared."""
        for section, model, attribute in _fields():
            if model.model_fields[attribute].alias == name:
                return getattr(getattr(self, section) if section else self, attribute)
        raise KeyError(f"no setting named {name}")


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias for f in model.model_fields.values() if f.alias]


def _fields() -> Iterator[tuple[str, type[BaseModel], str]]:
    """(section attribute or "", model, field attribute) of every setting, in declaration order."""
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for attribute in model.model_fields:
                yield name, model, attribute
        else:
            yield "", Settings, name


def setting_fields() -> Iterator[FieldInfo]:
    """Every setting's field (alias = the app-setting name), in declaration order."""
    for _, model, attribute in _fields():
        field = model.model_fields[attribute]
        if field.alias:
            yield field


def _known_names() -> dict[str, str]:
    """Upper-cased setting name -> alias as declared."""
    return {f.alias.upper(): f.alias for f in setting_fields() if f.alias}


def app_setting_values(env: Mapping[str, str]) -> dict[str, str]:
    """The known settings in `env`, by their declared names (matched case-insensitively, as Azure app settings
    are on Linux workers' environment); blank values count as unset."""
    known = _known_names()
    return {
        known[name.upper()]: value
        for name, value in env.items()
        if name.upper() in known and value is not None and str(value).strip()
    }


@contextmanager
def _reading(values: Mapping[str, str]) -> Iterator[None]:
    token = _SOURCE.set(values)
    try:
        yield
    finally:
        _SOURCE.reset(token)


# --- what each feature needs -------------------------------------------------------------------------------

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})


@dataclass(frozen=True)
class Requirement:
    """A feature cannot run without one of `names` (when the condition `when`, "NAME=value", holds)."""

    feature: Feature
    names: tuple[str, ...]
    why: str
    when: str | None = None

    def holds(self, values: Mapping[str, str]) -> bool:
        if self.when is None:
            return True
        name, _, expected = self.when.partition("=")
        field = next(f for f in setting_fields() if f.alias == name)
        actual = str(values.get(name, field.default)).strip().lower()
        if expected in ("true", "false"):
            return (actual in _TRUE) == (expected == "true")
        return actual == expected

    def problem(self, values: Mapping[str, str], features: set[Feature]) -> str | None:
        if self.feature not in features or not self.holds(values) or any(values.get(n) for n in self.names):
            return None
        if len(self.names) == 1:
            return f"{self.names[0]}: required {self.why}"
        return f"{' or '.join(self.names)}: one is required {self.why}"


def _need(feature: Feature, names: str, why: str, when: str | None = None) -> Requirement:
    return Requirement(feature, tuple(names.split(" or ")), why, when)


REQUIREMENTS: tuple[Requirement, ...] = (
    _need(
        Feature.STATE,
        "STATE_TABLE_CONNECTION or STATE_TABLE_ENDPOINT",
        "when STATE_BACKEND=table (a connection string, or the table endpoint for the managed identity)",
        when="STATE_BACKEND=table",
    ),
    _need(
        Feature.QUEUE,
        "SERVICEBUS_CONNECTION or SERVICEBUS_CONNECTION__fullyQualifiedNamespace",
        "(a connection string, or the namespace host for the managed identity)",
    ),
    _need(Feature.WEBHOOK, "GRAPH_CLIENT_STATE", "to verify that notifications come from Graph"),
    _need(Feature.SUBSCRIPTION, "GRAPH_CLIENT_STATE", "for the /users subscription"),
    _need(Feature.SUBSCRIPTION, "GRAPH_NOTIFICATION_URL", "for the /users subscription (the webhook's public URL)"),
    _need(Feature.LICENSING, "LICENSE_GROUP_ID", "when LICENSE_MODE=group", when="LICENSE_MODE=group"),
    _need(
        Feature.LICENSING, "LICENSE_SKU", "when LICENSE_MODE=sku (the skuPartNumber to assign)", when="LICENSE_MODE=sku"
    ),
    _need(
        Feature.LICENSING,
        "DEFAULT_USAGE_LOCATION",
        "when LICENSE_MODE=sku (a licence needs a usage location)",
        when="LICENSE_MODE=sku",
    ),
    _need(
        Feature.LICENSING,
        "MAIL_SENDER",
        "when LICENSE_WELCOME_MAIL=true (the welcome mail's sender)",
        when="LICENSE_WELCOME_MAIL=true",
    ),
    _need(
        Feature.LICENSING,
        "LICENSE_WELCOME_TENANT_ID",
        "when LICENSE_WELCOME_MAIL=true (the tenant-specific My Apps link)",
        when="LICENSE_WELCOME_MAIL=true",
    ),
    _need(Feature.ALERTS, "MAIL_SENDER", "to mail alerts to the admins"),
    _need(Feature.ALERTS, "ADMIN_ALERT_RECIPIENTS", "to mail alerts to the admins"),
    _need(Feature.RISK, "MAIL_SENDER", "to mail risk-blocked guests how to unblock themselves"),
    _need(
        Feature.RISK,
        "MAIL_SENDER",
        "when RISK_DIGEST_ENABLED=true (the daily digest's sender)",
        when="RISK_DIGEST_ENABLED=true",
    ),
    _need(
        Feature.RISK,
        "ADMIN_ALERT_RECIPIENTS",
        "when RISK_DIGEST_ENABLED=true (who gets the daily digest)",
        when="RISK_DIGEST_ENABLED=true",
    ),
    _need(
        Feature.STALE,
        "MAIL_SENDER",
        "when STALE_DRY_RUN=false (sponsors are mailed before any guest is disabled)",
        when="STALE_DRY_RUN=false",
    ),
    _need(
        Feature.STALE,
        "REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL",
        "when REPORT_STORE=blob (a connection string, or the blob endpoint for the managed identity)",
        when="REPORT_STORE=blob",
    ),
)
"""Settings a feature cannot run without: checked by `load_settings`, listed in docs/configuration.md."""


# --- loading -----------------------------------------------------------------------------------------------

UNRESOLVED_REFERENCE = (
    "a Key Vault reference the platform could not resolve (does the vault hold the secret, and may the app's "
    "identity read it: keyVaultReferenceIdentity, Key Vault Secrets User?)"
)


def load_settings(env: Mapping[str, str], features: Iterable[Feature] = tuple(Feature)) -> Settings:
    """Validate `env` (usually os.environ) once; raise one SettingsError naming every problem.

    Names are matched case-insensitively, as Azure app settings are on Linux workers' environment.
    Blank values count as unset.
    """
    values = app_setting_values(env)
    # App Service hands an unresolved Key Vault reference over as its own text: never use it as the value.
    unresolved = sorted(
        name for name, value in values.items() if str(value).lstrip().startswith("@Microsoft.KeyVault(")
    )
    values = {name: value for name, value in values.items() if name not in unresolved}
    problems = [f"{name}: {UNRESOLVED_REFERENCE}" for name in unresolved] + _cross_checks(values, set(features))
    problems += dashboard_problems(values, env)
    settings: Settings | None = None
    try:
        with _reading(values):
            settings = Settings()
    except ValidationError as exc:
        problems += _describe(exc, values)
    if settings is not None and Feature.RISK in features:
        settings, partner_problems = _with_partners(settings, env)
        problems += partner_problems
    if problems or settings is None:
        raise SettingsError(problems)
    return settings


def _with_partners(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """Read and validate RISK_PARTNER_DIRECTORY (its secrets are other app settings, resolved from `env`)."""
    path = settings.risk.partner_directory
    if path is None:
        return settings, []
    try:
        partners = load_partner_directory(path, env)
    except PartnerDirectoryError as error:
        return settings, [f"{PARTNERS_SETTING}: {problem}" for problem in error.problems]
    risk = settings.risk.model_copy(update={"partners": partners})
    return settings.model_copy(update={"risk": risk}), []


def _cross_checks(values: Mapping[str, str], features: set[Feature]) -> list[str]:
    """Rules that involve several settings, or a setting a requested feature cannot run without."""
    problems: list[str] = []
    base_url = values.get("GRAPH_BASE_URL", GRAPH_PUBLIC_CLOUD)
    if values.get("GRAPH_AUTH") == "local-token" and not is_loopback_url(base_url):
        problems.append(
            "GRAPH_AUTH: local-token is refused unless GRAPH_BASE_URL is a loopback simulator "
            f"(GRAPH_BASE_URL is {base_url})"
        )
    if values.get("STALE_ATTEST_SIGNING_KEY") and not values.get("STALE_ATTEST_BASE_URL"):
        problems.append(
            "STALE_ATTEST_BASE_URL: required when STALE_ATTEST_SIGNING_KEY is set (the app's public origin, "
            "e.g. https://<app>.azurewebsites.net, that the sponsors' links point to)"
        )
    problems += [p for r in REQUIREMENTS if (p := r.problem(values, features))]
    return problems


def _is_secret(field: FieldInfo) -> bool:
    return field.annotation is not None and "SecretStr" in str(field.annotation)


def _describe(exc: ValidationError, values: Mapping[str, str]) -> list[str]:
    """One line per problem, naming the app setting; a secret's value is never shown."""
    known = {f.alias: f for f in setting_fields() if f.alias}
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        name = next((str(part) for part in error["loc"] if str(part) in known), "settings")
        message = error["msg"].removeprefix("Value error, ")
        shown = values.get(name)
        secret = name in known and _is_secret(known[name])
        got = "" if shown is None or secret else f" (got {shown!r})"
        problems.append(f"{name}: {message}{got}")
    return problems


AZURE_MARKERS = ("WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID")
"""Set by the platform on every App Service / Functions instance in Azure, never by the local world."""


def dashboard_problems(values: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """The dashboard's rules: its origin is needed with its key, and the development sign-in is refused in Azure
    (there, App Service Authentication signs operators in)."""
    problems: list[str] = []
    if values.get("DASHBOARD_SIGNING_KEY") and not values.get("DASHBOARD_BASE_URL"):
        problems.append(
            "DASHBOARD_BASE_URL: required when DASHBOARD_SIGNING_KEY is set (the dashboard's public origin, "
            "e.g. https://<app>.azurewebsites.net)"
        )
    in_azure = [name for name in AZURE_MARKERS if str(env.get(name) or "").strip()]
    if values.get("DASHBOARD_DEV_SIGNIN") and in_azure:
        problems.append(
            f"DASHBOARD_DEV_SIGNIN: the development sign-in is refused in Azure ({in_azure[0]} is set); remove "
            "the setting and sign operators in with App Service Authentication (docs/dashboard.md)"
        )
    return problems
