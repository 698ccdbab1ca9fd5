"""Every app setting guestwarden reads, typed, validated once at start.

Azure Functions hands app settings to the worker as environment variables; locally they come from
local.settings.json (`Values`) or the shell. `load_settings()` reads them once and either returns a frozen
`Settings` or raises ONE `SettingsError` that names every bad or missing setting and says what it expects,
so an operator fixes a deployment in one pass instead of one redeploy per typo.

Settings are grouped by the feature that needs them (`Feature`): the CLI's `guests` needs only Graph, the
function app needs everything. A feature's required settings are checked only when that feature is asked for.

docs/configuration.md lists every setting; a test keeps it in step with `SETTINGS_TABLE` below.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

GRAPH_PUBLIC_CLOUD = "https://graph.microsoft.com/v1.0"

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_MAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


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


class SettingsError(ValueError):
    """One error for every bad setting, each line naming the setting and what it expects."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = sorted(set(problems))
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"guestwarden cannot start: {count} setting(s) need attention:\n{lines}")


def is_loopback_url(url: str) -> bool:
    """True for http(s)://localhost, 127.0.0.0/8 or [::1]: the only hosts plain http is allowed to."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """The validated settings. Field aliases are the app-setting names (upper case, as in Azure)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", str_strip_whitespace=True)

    # --- Microsoft Graph -------------------------------------------------------------------------------
    graph_base_url: str = Field(
        GRAPH_PUBLIC_CLOUD,
        alias="GRAPH_BASE_URL",
        description="Graph root including the version segment. https only, except a loopback simulator.",
    )
    graph_auth: Literal["managed-identity", "local-token"] = Field(
        "managed-identity",
        alias="GRAPH_AUTH",
        description=(
            "How the app authenticates to Graph: `managed-identity` (DefaultAzureCredential: the Function "
            "App's managed identity in Azure, your az login on a workstation) or `local-token` (a fixed "
            "token, accepted only when GRAPH_BASE_URL is a loopback simulator)."
        ),
    )
    azure_client_id: str | None = Field(
        None,
        alias="AZURE_CLIENT_ID",
        description="Client id of the user-assigned managed identity; empty = system-assigned.",
    )
    graph_scope: str = Field(
        GRAPH_DEFAULT_SCOPE,
        alias="GRAPH_SCOPE",
        description="Token scope requested for Graph (national clouds use their own host).",
    )
    graph_max_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        5,
        alias="GRAPH_MAX_RETRIES",
        description="Retries of throttled (429) or unavailable (503/504) idempotent Graph calls, 0-10.",
    )
    graph_page_size: Annotated[int, Field(ge=1, le=999)] = Field(
        999,
        alias="GRAPH_PAGE_SIZE",
        description="`$top` asked for when listing users, 1-999 (at most 500 with signInActivity, Graph's "
        "documented maximum; less if Graph refuses it). The gateway reads the pages as Graph cuts them.",
    )
    graph_sign_in_activity_per_minute: Annotated[int, Field(ge=0, le=10_000)] = Field(
        10,
        alias="GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE",
        description="At most this many requests reading signInActivity a minute, per app and tenant (Graph's "
        "documented quota: 10); 0 = no pacing. Keeps the stale sweep under the quota instead of provoking 429s.",
    )
    graph_reports_per_10_seconds: Annotated[int, Field(ge=0, le=10_000)] = Field(
        5,
        alias="GRAPH_REPORTS_PER_10_SECONDS",
        description="At most this many sign-in log requests per 10 s (Graph's reports quota: 5); 0 = no pacing.",
    )
    graph_mailbox_concurrency: Annotated[int, Field(ge=1, le=100)] = Field(
        4,
        alias="GRAPH_MAILBOX_CONCURRENCY",
        description="sendMail requests in flight per mailbox at once (Outlook allows 4).",
    )
    graph_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        30.0,
        alias="GRAPH_TIMEOUT_SECONDS",
        description="Per-request HTTP timeout towards Graph, seconds.",
    )
    graph_batch_max_rounds: Annotated[int, Field(ge=1, le=20)] = Field(
        6,
        alias="GRAPH_BATCH_MAX_ROUNDS",
        description="How many times a `$batch` re-submits the items Graph throttled (per-item 429) "
        "before reporting them as throttled.",
    )

    # --- State store --------------------------------------------------------------------------------------
    state_backend: Literal["sqlite", "table"] = Field(
        "sqlite",
        alias="STATE_BACKEND",
        description="`table` (Azure Table Storage, production) or `sqlite` (embedded file, demo/local).",
    )
    state_sqlite_path: Path = Field(
        Path(".guestwarden/state.db"),
        alias="STATE_SQLITE_PATH",
        description="SQLite file for STATE_BACKEND=sqlite (parent folders are created).",
    )
    state_table_connection: SecretStr | None = Field(
        None,
        alias="STATE_TABLE_CONNECTION",
        description="Table Storage connection string (Azurite, or a key-based account). Secret.",
    )
    state_table_endpoint: str | None = Field(
        None,
        alias="STATE_TABLE_ENDPOINT",
        description="Table endpoint, e.g. https://<account>.table.core.windows.net, used with the "
        "managed identity when STATE_TABLE_CONNECTION is empty.",
    )
    state_table_prefix: str = Field(
        "guestwarden",
        alias="STATE_TABLE_PREFIX",
        description="Prefix of the tables guestwarden creates (letters and digits, 1-40).",
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,39}$",
    )

    # --- Service Bus --------------------------------------------------------------------------------------
    servicebus_connection: SecretStr | None = Field(
        None,
        alias="SERVICEBUS_CONNECTION",
        description="Service Bus connection string (also the Functions trigger's `connection`). Secret.",
    )
    servicebus_namespace: str | None = Field(
        None,
        alias="SERVICEBUS_CONNECTION__fullyQualifiedNamespace",
        description="Fully qualified namespace (<name>.servicebus.windows.net) for identity-based access; "
        "the Functions host reads the same name.",
    )

    # --- Flow 1: change notifications, subscription, delta backstop -----------------------------------
    graph_notification_url: SecretStr | None = Field(
        None,
        alias="GRAPH_NOTIFICATION_URL",
        description="Public URL Graph POSTs change notifications to: https://<app>.azurewebsites.net/api/"
        "graph/notifications?code=<function key>. Secret (it carries the function key).",
    )
    graph_lifecycle_notification_url: SecretStr | None = Field(
        None,
        alias="GRAPH_LIFECYCLE_NOTIFICATION_URL",
        description="Where Graph sends lifecycle events (reauthorizationRequired ...); empty = the notification "
        "URL (the same function tells them apart). Secret.",
    )
    graph_client_state: SecretStr | None = Field(
        None,
        alias="GRAPH_CLIENT_STATE",
        description="Shared secret Graph echoes in every notification (16-128 characters); notifications "
        "without it are dropped. Secret: a Key Vault reference in Azure.",
    )
    subscription_lifetime_minutes: Annotated[int, Field(ge=60, le=41760)] = Field(
        41000,
        alias="SUBSCRIPTION_LIFETIME_MINUTES",
        description="Lifetime asked for the /users subscription, 60-41760 (Graph's maximum for users, < 29 days).",
    )
    subscription_renew_before_hours: Annotated[int, Field(ge=1, le=600)] = Field(
        72,
        alias="SUBSCRIPTION_RENEW_BEFORE_HOURS",
        description="Renew the subscription when it expires within this many hours.",
    )
    subscription_schedule: str = Field(
        "0 0 */6 * * *",
        alias="SUBSCRIPTION_SCHEDULE",
        description="NCRONTAB (six fields, seconds first) of the subscription keeper timer.",
    )
    delta_schedule: str = Field(
        "0 */15 * * * *",
        alias="DELTA_SCHEDULE",
        description="NCRONTAB of the users/delta backstop timer (catches notifications Graph never sent).",
    )
    delta_first_run: Literal["latest", "full"] = Field(
        "latest",
        alias="DELTA_FIRST_RUN",
        description="First delta run: `latest` (only changes from now on) or `full` (every user once; every "
        "accepted, unlicensed guest gets licensed).",
    )

    # --- Flow 1: licensing ------------------------------------------------------------------------------
    license_mode: Literal["sku", "group"] = Field(
        "sku",
        alias="LICENSE_MODE",
        description="`sku`: assign LICENSE_SKU directly (needs a usage location); `group`: add the guest to "
        "LICENSE_GROUP_ID (group-based licensing).",
    )
    license_sku: str | None = Field(
        None,
        alias="LICENSE_SKU",
        description="skuPartNumber to assign in sku mode, e.g. `GUEST_ACCESS` (see `GET /subscribedSkus`).",
    )
    license_disabled_plans: tuple[str, ...] = Field(
        (),
        alias="LICENSE_DISABLED_PLANS",
        description="Comma-separated servicePlanIds (GUIDs) to disable in the assigned SKU.",
    )
    license_group_id: str | None = Field(
        None,
        alias="LICENSE_GROUP_ID",
        description="Object id of the licensing group in group mode.",
    )
    default_usage_location: str | None = Field(
        None,
        alias="DEFAULT_USAGE_LOCATION",
        description="ISO 3166 alpha-2 country set on guests without one before a direct licence (e.g. `US`). "
        "An existing usage location is never overwritten.",
    )
    usage_location_by_domain: dict[str, str] = Field(
        {},
        alias="USAGE_LOCATION_BY_DOMAIN",
        description="Per home domain overrides of DEFAULT_USAGE_LOCATION: `fabrikam.com=DE,tailspin.co.uk=GB`.",
    )
    license_excluded_domains: frozenset[str] = Field(
        frozenset(),
        alias="LICENSE_EXCLUDED_DOMAINS",
        description="Comma-separated home domains whose guests are never licensed.",
    )
    no_seat_retry_minutes: Annotated[int, Field(ge=1, le=1440)] = Field(
        60,
        alias="NO_SEAT_RETRY_MINUTES",
        description="When no seat is free, the guest's message is rescheduled this many minutes later.",
    )

    # --- Mail -------------------------------------------------------------------------------------------
    mail_sender: str | None = Field(
        None,
        alias="MAIL_SENDER",
        description="UPN of the mailbox guestwarden sends from (restrict Mail.Send to it with Exchange RBAC "
        "for Applications).",
    )
    admin_alert_recipients: tuple[str, ...] = Field(
        (),
        alias="ADMIN_ALERT_RECIPIENTS",
        description="Comma-separated addresses that get operational alerts (e.g. no free seats, once per SKU a day).",
    )

    # --- Flows 2/3: risk-blocked guests (docs/risk-blocked-guests.md) --------------------------------
    risk_poll_schedule: str = Field(
        "0 */5 * * * *",
        alias="RISK_POLL_SCHEDULE",
        description="NCRONTAB of the sign-in poller that finds guests blocked because of risk.",
    )
    risk_lookback_minutes: Annotated[int, Field(ge=5, le=1440)] = Field(
        120,
        alias="RISK_LOOKBACK_MINUTES",
        description="Each poll re-reads this many minutes before its watermark (sign-in logs arrive late); "
        "the first poll reads this far back. 5-1440.",
    )
    risk_quiet_minutes: Annotated[int, Field(ge=5, le=10080)] = Field(
        720,
        alias="RISK_QUIET_MINUTES",
        description="A guest's risk blocks are one incident (one mail, one ticket) until the guest has had no "
        "risk block for this many minutes. 5-10080.",
    )
    risk_organisation_name: str | None = Field(
        None,
        alias="RISK_ORGANISATION_NAME",
        description="Our organisation's name as guests know it, used in the guest notice and the ticket.",
    )
    risk_support_contact: str | None = Field(
        None,
        alias="RISK_SUPPORT_CONTACT",
        description="Whom a blocked guest may contact on our side (an address or a URL), shown in the notice.",
    )
    risk_template_dir: Path | None = Field(
        None,
        alias="RISK_TEMPLATE_DIR",
        description="Folder whose notice templates (notice.html, notice.txt, subject.txt, ticket.txt) "
        "override the built-in ones in shared/templates/risk/.",
    )
    risk_notice_format: Literal["html", "text"] = Field(
        "html",
        alias="RISK_NOTICE_FORMAT",
        description="Body of the guest notice: `html` (notice.html, autoescaped) or `text` (notice.txt); the "
        "daily digest follows it (digest.html or digest.txt). Graph's JSON sendMail carries one body.",
    )
    risk_partner_directory: Path | None = Field(
        None,
        alias="RISK_PARTNER_DIRECTORY",
        description="JSON file mapping home tenant id or domain -> ticket sink, with a required default sink "
        "(schema in docs/risk-blocked-guests.md). Empty = no home-tenant tickets (audited as skipped).",
    )
    risk_ticket_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        4,
        alias="RISK_TICKET_ATTEMPTS",
        description="Attempts per delivery of a ticket to its sink before the message is abandoned (Service "
        "Bus then redelivers it, and dead-letters it after maxDeliveryCount).",
    )
    risk_ticket_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = Field(
        15.0,
        alias="RISK_TICKET_TIMEOUT_SECONDS",
        description="HTTP timeout of one call to a ticket sink (webhook, ServiceNow), seconds.",
    )
    risk_digest_enabled: bool = Field(
        False,
        alias="RISK_DIGEST_ENABLED",
        description="`true`: mail ADMIN_ALERT_RECIPIENTS (from MAIL_SENDER) a daily digest of risk incidents "
        "(the last 24 h and those still open); nothing is sent on a day with nothing to report.",
    )
    risk_digest_schedule: str = Field(
        "0 0 7 * * *",
        alias="RISK_DIGEST_SCHEDULE",
        description="NCRONTAB of the daily risk digest timer (at most one digest per UTC day, whatever the "
        "schedule says).",
    )

    @field_validator("risk_digest_schedule")
    @classmethod
    def _risk_digest_schedule(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError("expected a six-field NCRONTAB expression, seconds first, e.g. '0 0 7 * * *'")
        return value

    # --- Flow 4: stale-guest sweep (docs/stale-guests.md) ----------------------------------------------
    stale_sweep_schedule: str = Field(
        "0 0 2 * * *",
        alias="STALE_SWEEP_SCHEDULE",
        description="NCRONTAB of the nightly stale-guest sweep.",
    )
    stale_dry_run: bool = Field(
        True,
        alias="STALE_DRY_RUN",
        description="`true` (the default): the sweep only plans and reports. Set `false` to warn, disable and "
        "delete for real.",
    )
    stale_inactive_days: Annotated[int, Field(ge=30, le=3650)] = Field(
        90,
        alias="STALE_INACTIVE_DAYS",
        description="A guest is stale after this many days without any sign-in (interactive, non-interactive "
        "or successful); a guest who never signed in counts from acceptance. 30-3650.",
    )
    stale_pending_days: Annotated[int, Field(ge=7, le=3650)] = Field(
        30,
        alias="STALE_PENDING_DAYS",
        description="An invitation not redeemed after this many days is stale. 7-3650.",
    )
    stale_warn_grace_days: Annotated[int, Field(ge=1, le=365)] = Field(
        14,
        alias="STALE_WARN_GRACE_DAYS",
        description="Days between the warning (sponsors mailed) and disabling the account. 1-365.",
    )
    stale_delete_grace_days: Annotated[int, Field(ge=1, le=365)] = Field(
        30,
        alias="STALE_DELETE_GRACE_DAYS",
        description="Days between disabling and the (soft, 30-day restorable) delete. 1-365.",
    )
    stale_new_guest_grace_days: Annotated[int, Field(ge=0, le=365)] = Field(
        14,
        alias="STALE_NEW_GUEST_GRACE_DAYS",
        description="Guests created within this many days are never acted on. 0-365.",
    )
    stale_max_actions: Annotated[int, Field(ge=0, le=100000)] = Field(
        50,
        alias="STALE_MAX_ACTIONS",
        description="A run that would warn, disable or delete more guests than this acts on nobody (the plan "
        "is kept in the report for review).",
    )
    stale_max_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        10.0,
        alias="STALE_MAX_PERCENT",
        description="Same cap as a percentage of all guests (0-100); both caps apply.",
    )
    stale_abort_missing_activity_percent: Annotated[float, Field(ge=1, le=100)] = Field(
        50.0,
        alias="STALE_ABORT_MISSING_ACTIVITY_PERCENT",
        description="Abort when more than this percentage of the guests who redeemed their invitation have no "
        "signInActivity at all (data that looks wrong; a tenant without Entra ID P1/P2 or an app without "
        "AuditLog.Read.All gets a 403 instead, which always aborts). Pending invitations never count.",
    )
    stale_scan_concurrency: Annotated[int, Field(ge=1, le=16)] = Field(
        8,
        alias="STALE_SCAN_CONCURRENCY",
        description="How many createdDateTime ranges of the guest list the sweep pages at once (1-16; 1 pages "
        "one nextLink chain). Used only when latency, not the signInActivity quota, is the limit: with "
        "GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE at 60 or less (Graph's quota is 10) one chain is read.",
    )
    stale_exclude_group_ids: tuple[str, ...] = Field(
        (),
        alias="STALE_EXCLUDE_GROUP_IDS",
        description="Comma-separated object ids of groups whose (direct) members are never acted on.",
    )
    stale_exclude_domains: frozenset[str] = Field(
        frozenset(),
        alias="STALE_EXCLUDE_DOMAINS",
        description="Comma-separated home domains whose guests are never acted on.",
    )
    stale_exclude_upn_patterns: tuple[str, ...] = Field(
        (),
        alias="STALE_EXCLUDE_UPN_PATTERNS",
        description="Comma-separated UPN patterns (`*` and `?`, case-insensitive), e.g. `auditor*`.",
    )
    stale_notify_guest: bool = Field(
        False,
        alias="STALE_NOTIFY_GUEST",
        description="Also mail the guest at the warning (sponsors are always mailed).",
    )
    stale_report_dir: Path = Field(
        Path(".guestwarden/reports"),
        alias="STALE_REPORT_DIR",
        description="Folder the sweep writes its CSV and HTML reports to when REPORT_STORE=folder.",
    )
    stale_template_dir: Path | None = Field(
        None,
        alias="STALE_TEMPLATE_DIR",
        description="Folder whose mail/report templates override the built-in ones in shared/templates/stale/.",
    )
    report_store: Literal["folder", "blob"] = Field(
        "folder",
        alias="REPORT_STORE",
        description="Where the sweep's reports go: `folder` (STALE_REPORT_DIR) or `blob` (the Azure Blob Storage "
        "container REPORT_BLOB_CONTAINER; needs REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL).",
    )
    report_blob_connection: SecretStr | None = Field(
        None,
        alias="REPORT_BLOB_CONNECTION",
        description="Blob Storage connection string for REPORT_STORE=blob (Azurite, key-based accounts); "
        "wins over REPORT_BLOB_ACCOUNT_URL.",
    )
    report_blob_account_url: str | None = Field(
        None,
        alias="REPORT_BLOB_ACCOUNT_URL",
        description="Blob endpoint (https://<account>.blob.core.windows.net) for REPORT_STORE=blob with the "
        "managed identity (AZURE_CLIENT_ID), which needs Storage Blob Data Contributor on the account.",
    )
    report_blob_container: str = Field(
        "guestwarden-reports",
        alias="REPORT_BLOB_CONTAINER",
        description="Container for REPORT_STORE=blob, created if missing; each run's reports go under "
        "`stale/<run id>/`. 3-63 lower-case letters, digits and single hyphens.",
    )

    @field_validator("stale_exclude_group_ids", "stale_exclude_domains", "stale_exclude_upn_patterns", mode="before")
    @classmethod
    def _stale_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("stale_exclude_group_ids")
    @classmethod
    def _stale_groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _GUID.fullmatch(v)]
        if bad:
            raise ValueError(f"expected group object ids (GUIDs), not {', '.join(bad)}")
        return value

    @field_validator("stale_exclude_domains")
    @classmethod
    def _stale_domains(cls, value: frozenset[str]) -> frozenset[str]:
        lowered = frozenset(v.lower() for v in value)
        bad = sorted(v for v in lowered if not _DOMAIN.fullmatch(v))
        if bad:
            raise ValueError(f"expected domain names, not {', '.join(bad)}")
        return lowered

    @field_validator("stale_sweep_schedule")
    @classmethod
    def _stale_schedule(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError("expected a six-field NCRONTAB expression, seconds first, e.g. '0 0 2 * * *'")
        return value

    @field_validator("report_blob_container")
    @classmethod
    def _report_container(cls, value: str) -> str:
        # Azure's container naming rules (shared.adapters.reports.CONTAINER_NAME).
        if not re.fullmatch(r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*", value):
            raise ValueError(
                "expected a container name: 3-63 lower-case letters, digits and single hyphens, starting and "
                "ending with a letter or digit"
            )
        return value

    @field_validator("report_blob_account_url")
    @classmethod
    def _report_account_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        plain_ok = parts.scheme == "http" and is_loopback_url(value)
        if not parts.hostname or parts.query or (parts.scheme != "https" and not plain_ok):
            raise ValueError(
                "expected https://<account>.blob.core.windows.net (plain http only for a loopback emulator)"
            )
        return value

    @field_validator("report_blob_connection")
    @classmethod
    def _report_connection(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        pairs = (part.split("=", 1) for part in value.get_secret_value().split(";") if "=" in part)
        keys = {key.strip().lower(): val.strip().lower() for key, val in pairs}
        if not ({"accountname", "blobendpoint"} & keys.keys() or keys.get("usedevelopmentstorage") == "true"):
            raise ValueError(
                "expected a Blob Storage connection string with AccountName=... or BlobEndpoint=... "
                "(or UseDevelopmentStorage=true)"
            )
        return value

    # --- validators -------------------------------------------------------------------------------------
    @field_validator("graph_base_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        value = value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("expected an absolute URL such as https://graph.microsoft.com/v1.0")
        if parts.scheme == "http" and not is_loopback_url(value):
            raise ValueError("plain http is allowed only for a loopback simulator (127.0.0.1, localhost)")
        if not parts.path.strip("/"):
            raise ValueError("expected the version segment in the path, e.g. .../v1.0")
        return value

    @field_validator("azure_client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not _GUID.fullmatch(value):
            raise ValueError("expected a GUID (the managed identity's client id)")
        return value

    @field_validator("license_disabled_plans", "admin_alert_recipients", "license_excluded_domains", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("license_disabled_plans")
    @classmethod
    def _plan_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _GUID.fullmatch(v)]
        if bad:
            raise ValueError(f"expected servicePlanIds (GUIDs), not {', '.join(bad)}")
        return value

    @field_validator("admin_alert_recipients")
    @classmethod
    def _recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _MAIL.fullmatch(v)]
        if bad:
            raise ValueError(f"expected e-mail addresses, not {', '.join(bad)}")
        return value

    @field_validator("mail_sender")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        if value is not None and not _MAIL.fullmatch(value):
            raise ValueError("expected the sender mailbox's UPN, e.g. guestwarden@contoso.com")
        return value

    @field_validator("license_excluded_domains")
    @classmethod
    def _domains(cls, value: frozenset[str]) -> frozenset[str]:
        lowered = frozenset(v.lower() for v in value)
        bad = sorted(v for v in lowered if not _DOMAIN.fullmatch(v))
        if bad:
            raise ValueError(f"expected domain names, not {', '.join(bad)}")
        return lowered

    @field_validator("default_usage_location")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not _COUNTRY.fullmatch(value.upper()):
            raise ValueError("expected an ISO 3166 alpha-2 country code such as US or DE")
        return value.upper() if value else value

    @field_validator("usage_location_by_domain", mode="before")
    @classmethod
    def _domain_map(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mapping: dict[str, str] = {}
        for pair in (p.strip() for p in value.split(",") if p.strip()):
            domain, sep, country = pair.partition("=")
            domain, country = domain.strip().lower(), country.strip().upper()
            if not sep or not _DOMAIN.fullmatch(domain) or not _COUNTRY.fullmatch(country):
                raise ValueError(f"expected domain=CC pairs such as fabrikam.com=DE, not {pair!r}")
            mapping[domain] = country
        return mapping

    @field_validator("license_group_id")
    @classmethod
    def _group_id(cls, value: str | None) -> str | None:
        if value is not None and not _GUID.fullmatch(value):
            raise ValueError("expected the group's object id (a GUID)")
        return value

    @field_validator("graph_client_state")
    @classmethod
    def _client_state(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 16 <= len(value.get_secret_value()) <= 128:
            raise ValueError("expected 16-128 characters (Graph allows at most 128; short secrets are guessable)")
        return value

    @field_validator("graph_notification_url", "graph_lifecycle_notification_url")
    @classmethod
    def _notification_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        url = value.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and is_loopback_url(url):
            return value
        raise ValueError("expected an https URL (Graph only calls https; plain http only for a loopback host)")

    @field_validator("subscription_schedule", "delta_schedule", "risk_poll_schedule")
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        from croniter import croniter

        fields = value.split()
        if len(fields) != 6 or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError("expected a six-field NCRONTAB expression, seconds first, e.g. '0 */15 * * * *'")
        return value

    @field_validator("state_table_endpoint")
    @classmethod
    def _table_endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("https", "http"):
            raise ValueError("expected a URL such as https://<account>.table.core.windows.net")
        return value

    @field_validator("servicebus_namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None and ("://" in value or "/" in value or "." not in value):
            raise ValueError("expected a host name such as <name>.servicebus.windows.net (no scheme)")
        return value


@dataclass(frozen=True)
class SettingDoc:
    """One row of docs/configuration.md."""

    name: str
    default: str
    description: str
    secret: bool


def settings_table() -> list[SettingDoc]:
    """The documented settings, straight from the model (docs/configuration.md is checked against it)."""
    rows: list[SettingDoc] = []
    for field in Settings.model_fields.values():
        assert field.alias is not None
        default = field.default
        shown = "" if default is None or default in ((), {}, frozenset()) else str(default)
        secret = field.annotation is not None and "SecretStr" in str(field.annotation)
        rows.append(SettingDoc(field.alias, shown, field.description or "", secret))
    return rows


def settings_markdown() -> str:
    """The settings table of docs/configuration.md (`make docs` writes it; a test keeps it in step)."""
    lines = ["| setting | default | what it is |", "| --- | --- | --- |"]
    for row in settings_table():
        default = f"`{row.default}`" if row.default else "(none)"
        lines.append(f"| `{row.name}` | {default} | {row.description} |")
    return "\n".join(lines) + "\n"


def _known_names() -> dict[str, str]:
    """Upper-cased setting name -> alias as declared."""
    return {f.alias.upper(): f.alias for f in Settings.model_fields.values() if f.alias}


UNRESOLVED_REFERENCE = (
    "a Key Vault reference the platform could not resolve (does the vault hold the secret, and may the app's "
    "identity read it: keyVaultReferenceIdentity, Key Vault Secrets User?)"
)


def load_settings(env: Mapping[str, str], features: Iterable[Feature] = tuple(Feature)) -> Settings:
    """Validate `env` (usually os.environ) once; raise one SettingsError naming every problem.

    Names are matched case-insensitively, as Azure app settings are on Linux workers' environment.
    Blank values count as unset.
    """
    known = _known_names()
    values = {
        known[name.upper()]: value
        for name, value in env.items()
        if name.upper() in known and value is not None and str(value).strip()
    }
    # App Service hands an unresolved Key Vault reference over as its own text: never use it as the value.
    unresolved = sorted(
        name for name, value in values.items() if str(value).lstrip().startswith("@Microsoft.KeyVault(")
    )
    values = {name: value for name, value in values.items() if name not in unresolved}
    problems = [f"{name}: {UNRESOLVED_REFERENCE}" for name in unresolved] + _cross_checks(values, set(features))
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        problems += _describe(exc, values)
    if problems:
        raise SettingsError(problems)
    return settings


def _cross_checks(values: Mapping[str, str], features: set[Feature]) -> list[str]:
    """Rules that involve several settings, or a setting a requested feature cannot run without."""
    problems: list[str] = []
    base_url = values.get("GRAPH_BASE_URL", GRAPH_PUBLIC_CLOUD)
    if values.get("GRAPH_AUTH") == "local-token" and not is_loopback_url(base_url):
        problems.append(
            "GRAPH_AUTH: local-token is refused unless GRAPH_BASE_URL is a loopback simulator "
            f"(GRAPH_BASE_URL is {base_url})"
        )
    table_target = values.get("STATE_TABLE_CONNECTION") or values.get("STATE_TABLE_ENDPOINT")
    if Feature.STATE in features and values.get("STATE_BACKEND") == "table" and not table_target:
        problems.append(
            "STATE_TABLE_CONNECTION or STATE_TABLE_ENDPOINT: one is required when STATE_BACKEND=table "
            "(a connection string, or the table endpoint for the managed identity)"
        )
    queue_target = values.get("SERVICEBUS_CONNECTION") or values.get("SERVICEBUS_CONNECTION__fullyQualifiedNamespace")
    if Feature.QUEUE in features and not queue_target:
        problems.append(
            "SERVICEBUS_CONNECTION or SERVICEBUS_CONNECTION__fullyQualifiedNamespace: one is required "
            "(a connection string, or the namespace host for the managed identity)"
        )
    problems += _feature_requirements(values, features)
    return problems


def _feature_requirements(values: Mapping[str, str], features: set[Feature]) -> list[str]:
    problems: list[str] = []

    def need(feature: Feature, name: str, why: str) -> None:
        if feature in features and not values.get(name):
            problems.append(f"{name}: required {why}")

    need(Feature.WEBHOOK, "GRAPH_CLIENT_STATE", "to verify that notifications come from Graph")
    need(Feature.SUBSCRIPTION, "GRAPH_CLIENT_STATE", "for the /users subscription")
    need(Feature.SUBSCRIPTION, "GRAPH_NOTIFICATION_URL", "for the /users subscription (the webhook's public URL)")
    if values.get("LICENSE_MODE", "sku") == "group":
        need(Feature.LICENSING, "LICENSE_GROUP_ID", "when LICENSE_MODE=group")
    else:
        need(Feature.LICENSING, "LICENSE_SKU", "when LICENSE_MODE=sku (the skuPartNumber to assign)")
        need(Feature.LICENSING, "DEFAULT_USAGE_LOCATION", "when LICENSE_MODE=sku (a licence needs a usage location)")
    need(Feature.ALERTS, "MAIL_SENDER", "to mail alerts to the admins")
    need(Feature.ALERTS, "ADMIN_ALERT_RECIPIENTS", "to mail alerts to the admins")
    need(Feature.RISK, "MAIL_SENDER", "to mail risk-blocked guests how to unblock themselves")
    if values.get("RISK_DIGEST_ENABLED", "false").strip().lower() in ("true", "1", "yes", "on", "t", "y"):
        need(Feature.RISK, "MAIL_SENDER", "when RISK_DIGEST_ENABLED=true (the daily digest's sender)")
        need(Feature.RISK, "ADMIN_ALERT_RECIPIENTS", "when RISK_DIGEST_ENABLED=true (who gets the daily digest)")
    if values.get("STALE_DRY_RUN", "true").strip().lower() in ("false", "0", "no", "off"):
        need(
            Feature.STALE, "MAIL_SENDER", "when STALE_DRY_RUN=false (sponsors are mailed before any guest is disabled)"
        )
    blob_target = values.get("REPORT_BLOB_CONNECTION") or values.get("REPORT_BLOB_ACCOUNT_URL")
    if Feature.STALE in features and values.get("REPORT_STORE") == "blob" and not blob_target:
        problems.append(
            "REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL: one is required when REPORT_STORE=blob "
            "(a connection string, or the blob endpoint for the managed identity)"
        )
    return problems


_SECRET_SETTINGS = frozenset(
    {
        "SERVICEBUS_CONNECTION",
        "STATE_TABLE_CONNECTION",
        "REPORT_BLOB_CONNECTION",
        "GRAPH_CLIENT_STATE",
        "GRAPH_NOTIFICATION_URL",
        "GRAPH_LIFECYCLE_NOTIFICATION_URL",
    }
)


def _describe(exc: ValidationError, values: Mapping[str, str]) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "settings"
        message = error["msg"].removeprefix("Value error, ")
        shown = values.get(name)
        got = "" if shown is None or name in _SECRET_SETTINGS else f" (got {shown!r})"
        problems.append(f"{name}: {message}{got}")
    return problems
