"""The settings of each flow: one sub-model per flow, each setting declared once, by its app-setting name.

Every field's alias is the app setting's name exactly as in Azure (flat, e.g. STALE_PENDING_DAYS); the
description is what docs/configuration.md shows. A sub-model turns itself into its flow's policy/config object
(`settings.stale.policy()`, `settings.graph.config()` ...), so bootstrap wires without copying fields.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from shared.domain.reinvite import DEFAULT_MESSAGE, DEFAULT_REDIRECT_URL
from shared.settings.partners import PartnerDirectory
from shared.settings.types import (
    BlobAccountUrl,
    BlobConnectionString,
    ClientState,
    CommaList,
    CommaSet,
    ContainerName,
    CountryCode,
    DomainCountryMap,
    DomainName,
    GraphRoot,
    Guid,
    HostName,
    HttpEndpoint,
    HttpsUrl,
    Mailbox,
    NCrontab,
    PublicOrigin,
    SecretHttpsUrl,
    SigningKey,
    SigningKeys,
)

if TYPE_CHECKING:
    from shared.adapters.graph import GraphConfig
    from shared.domain.licensing import LicensingPolicy
    from shared.domain.stale import StalePolicy
    from shared.services.attestation import AttestConfig
    from shared.services.licensing import Alerting, WelcomeConfig
    from shared.services.posture import PostureConfig
    from shared.services.stale import StaleConfig
    from shared.services.subscriptions import SubscriptionConfig

GRAPH_PUBLIC_CLOUD = "https://graph.microsoft.com/v1.0"

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"


def reveal(value: SecretStr | None) -> str:
    """A secret's value for the one adapter that needs it ("" when unset)."""
    return value.get_secret_value() if value is not None else ""


class Section(BaseModel):
    """A flow's settings: frozen, filled by app-setting name (the alias), blanks stripped."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore", str_strip_whitespace=True)


class GraphSettings(Section):
    """Microsoft Graph: where, how to authenticate, how hard to push (GRAPH_*)."""

    base_url: GraphRoot = Field(
        GRAPH_PUBLIC_CLOUD,
        alias="GRAPH_BASE_URL",
        description="Graph root including the version segment. https only, except a loopback simulator.",
    )
    auth: Literal["managed-identity", "local-token"] = Field(
        "managed-identity",
        alias="GRAPH_AUTH",
        description=(
            "How the app authenticates to Graph: `managed-identity` (DefaultAzureCredential: the Function "
            "App's managed identity in Azure, your az login on a workstation) or `local-token` (a fixed "
            "token, accepted only when GRAPH_BASE_URL is a loopback simulator)."
        ),
    )
    scope: str = Field(
        GRAPH_DEFAULT_SCOPE,
        alias="GRAPH_SCOPE",
        description="Token scope requested for Graph (national clouds use their own host).",
    )
    max_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        5,
        alias="GRAPH_MAX_RETRIES",
        description="Retries of throttled (429) or unavailable (503/504) idempotent Graph calls, 0-10.",
    )
    page_size: Annotated[int, Field(ge=1, le=999)] = Field(
        999,
        alias="GRAPH_PAGE_SIZE",
        description="`$top` asked for when listing users, 1-999 (at most 500 with signInActivity, Graph's "
        "documented maximum; less if Graph refuses it). The gateway reads the pages as Graph cuts them.",
    )
    sign_in_activity_per_minute: Annotated[int, Field(ge=0, le=10_000)] = Field(
        10,
        alias="GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE",
        description="At most this many requests reading signInActivity a minute, per app and tenant (Graph's "
        "documented quota: 10); 0 = no pacing. Keeps the stale sweep under the quota instead of provoking 429s.",
    )
    reports_per_10_seconds: Annotated[int, Field(ge=0, le=10_000)] = Field(
        5,
        alias="GRAPH_REPORTS_PER_10_SECONDS",
        description="At most this many sign-in log requests per 10 s (Graph's reports quota: 5); 0 = no pacing.",
    )
    mailbox_concurrency: Annotated[int, Field(ge=1, le=100)] = Field(
        4,
        alias="GRAPH_MAILBOX_CONCURRENCY",
        description="sendMail requests in flight per mailbox at once (Outlook allows 4).",
    )
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        30.0,
        alias="GRAPH_TIMEOUT_SECONDS",
        description="Per-request HTTP timeout towards Graph, seconds.",
    )
    batch_max_rounds: Annotated[int, Field(ge=1, le=20)] = Field(
        6,
        alias="GRAPH_BATCH_MAX_ROUNDS",
        description="How many times a `$batch` re-submits the items Graph throttled (per-item 429) "
        "before reporting them as throttled.",
    )

    def config(self) -> GraphConfig:
        """The gateway's configuration (shared.adapters.graph)."""
        from shared.adapters.graph import GraphConfig

        return GraphConfig(**self.model_dump(exclude={"auth"}))


class StateSettings(Section):
    """The state store (STATE_*): SQLite for the demo, Table Storage in Azure."""

    backend: Literal["sqlite", "table"] = Field(
        "sqlite",
        alias="STATE_BACKEND",
        description="`table` (Azure Table Storage, production) or `sqlite` (embedded file, demo/local).",
    )
    sqlite_path: Path = Field(
        Path(".guestwarden/state.db"),
        alias="STATE_SQLITE_PATH",
        description="SQLite file for STATE_BACKEND=sqlite (parent folders are created).",
    )
    table_connection: SecretStr | None = Field(
        None,
        alias="STATE_TABLE_CONNECTION",
        description="Table Storage connection string (Azurite, or a key-based account). Secret.",
    )
    table_endpoint: HttpEndpoint | None = Field(
        None,
        alias="STATE_TABLE_ENDPOINT",
        description="Table endpoint, e.g. https://<account>.table.core.windows.net, used with the "
        "managed identity when STATE_TABLE_CONNECTION is empty.",
    )
    table_prefix: str = Field(
        "guestwarden",
        alias="STATE_TABLE_PREFIX",
        description="Prefix of the tables guestwarden creates (letters and digits, 1-40).",
        pattern=r"^[A-Za-z][A-Za-z0-9]{0,39}$",
    )


class ServiceBusSettings(Section):
    """Service Bus: a connection string, or the namespace for the managed identity."""

    connection: SecretStr | None = Field(
        None,
        alias="SERVICEBUS_CONNECTION",
        description="Service Bus connection string (also the Functions trigger's `connection`). Secret.",
    )
    namespace: HostName | None = Field(
        None,
        alias="SERVICEBUS_CONNECTION__fullyQualifiedNamespace",
        description="Fully qualified namespace (<name>.servicebus.windows.net) for identity-based access; "
        "the Functions host reads the same name.",
    )
    dead_letter_check_schedule: NCrontab = Field(
        "0 */15 * * * *",
        alias="DEADLETTER_CHECK_SCHEDULE",
        description="NCRONTAB of the dead-letter check: counts each queue's dead letters for the dashboard's "
        "overview and logs a warning naming every queue that has some (never a body).",
    )


class SubscriptionSettings(Section):
    """Flow 1: change notifications and the /users subscription (webhook, keeper timer)."""

    notification_url: SecretHttpsUrl | None = Field(
        None,
        alias="GRAPH_NOTIFICATION_URL",
        description="Public URL Graph POSTs change notifications to: https://<app>.azurewebsites.net/api/"
        "graph/notifications?code=<function key>. Secret (it carries the function key).",
    )
    lifecycle_notification_url: SecretHttpsUrl | None = Field(
        None,
        alias="GRAPH_LIFECYCLE_NOTIFICATION_URL",
        description="Where Graph sends lifecycle events (reauthorizationRequired ...); empty = the notification "
        "URL (the same function tells them apart). Secret.",
    )
    client_state: ClientState | None = Field(
        None,
        alias="GRAPH_CLIENT_STATE",
        description="Shared secret Graph echoes in every notification (16-128 characters); notifications "
        "without it are dropped. Secret: a Key Vault reference in Azure.",
    )
    lifetime_minutes: Annotated[int, Field(ge=60, le=41760)] = Field(
        41000,
        alias="SUBSCRIPTION_LIFETIME_MINUTES",
        description="Lifetime asked for the /users subscription, 60-41760 (Graph's maximum for users, < 29 days).",
    )
    renew_before_hours: Annotated[int, Field(ge=1, le=600)] = Field(
        72,
        alias="SUBSCRIPTION_RENEW_BEFORE_HOURS",
        description="Renew the subscription when it expires within this many hours.",
    )
    schedule: NCrontab = Field(
        "0 0 */6 * * *",
        alias="SUBSCRIPTION_SCHEDULE",
        description="NCRONTAB (six fields, seconds first) of the subscription keeper timer.",
    )

    def config(self) -> SubscriptionConfig:
        """The keeper's configuration; the lifecycle URL defaults to the notification URL."""
        from shared.services.subscriptions import SubscriptionConfig

        lifecycle = self.lifecycle_notification_url or self.notification_url
        return SubscriptionConfig(
            notification_url=reveal(self.notification_url),
            lifecycle_notification_url=reveal(lifecycle) or None,
            client_state=reveal(self.client_state),
            lifetime=timedelta(minutes=self.lifetime_minutes),
            renew_before=timedelta(hours=self.renew_before_hours),
        )


class DeltaSettings(Section):
    """Flow 1: the users/delta backstop."""

    schedule: NCrontab = Field(
        "0 */15 * * * *",
        alias="DELTA_SCHEDULE",
        description="NCRONTAB of the users/delta backstop timer (catches notifications Graph never sent).",
    )
    first_run: Literal["latest", "full"] = Field(
        "latest",
        alias="DELTA_FIRST_RUN",
        description="First delta run: `latest` (only changes from now on) or `full` (every user once; every "
        "accepted, unlicensed guest gets licensed).",
    )


class LicensingSettings(Section):
    """Flow 1: what an accepted guest is licensed with."""

    mode: Literal["sku", "group"] = Field(
        "sku",
        alias="LICENSE_MODE",
        description="`sku`: assign LICENSE_SKU directly (needs a usage location); `group`: add the guest to "
        "LICENSE_GROUP_ID (group-based licensing).",
    )
    sku: str | None = Field(
        None,
        alias="LICENSE_SKU",
        description="skuPartNumber to assign in sku mode, e.g. `GUEST_ACCESS` (see `GET /subscribedSkus`).",
    )
    disabled_plans: CommaList[Guid] = Field(
        (),
        alias="LICENSE_DISABLED_PLANS",
        description="Comma-separated servicePlanIds (GUIDs) to disable in the assigned SKU.",
    )
    group_id: Guid | None = Field(
        None,
        alias="LICENSE_GROUP_ID",
        description="Object id of the licensing group in group mode.",
    )
    default_usage_location: CountryCode | None = Field(
        None,
        alias="DEFAULT_USAGE_LOCATION",
        description="ISO 3166 alpha-2 country set on guests without one before a direct licence (e.g. `US`). "
        "An existing usage location is never overwritten.",
    )
    usage_location_by_domain: DomainCountryMap = Field(
        {},
        alias="USAGE_LOCATION_BY_DOMAIN",
        description="Per home domain overrides of DEFAULT_USAGE_LOCATION: `fabrikam.com=DE,tailspin.co.uk=GB`.",
    )
    excluded_domains: CommaSet[DomainName] = Field(
        frozenset(),
        alias="LICENSE_EXCLUDED_DOMAINS",
        description="Comma-separated home domains whose guests are never licensed.",
    )
    no_seat_retry_minutes: Annotated[int, Field(ge=1, le=1440)] = Field(
        60,
        alias="NO_SEAT_RETRY_MINUTES",
        description="When no seat is free, the guest's message is rescheduled this many minutes later.",
    )
    welcome_mail: bool = Field(
        False,
        alias="LICENSE_WELCOME_MAIL",
        description="Mail each guest guestwarden licenses, once, how to sign in: the path that fits its identity "
        "(Microsoft account, email one-time passcode, Google, partner Entra tenant ...) and the tenant-specific My "
        'Apps link. Needs MAIL_SENDER and LICENSE_WELCOME_TENANT_ID (docs/licensing.md, "Welcome mail").',
    )
    welcome_tenant_id: Guid | None = Field(
        None,
        alias="LICENSE_WELCOME_TENANT_ID",
        description="This tenant's id, for the welcome mail's `https://myapps.microsoft.com/?tenantid=<id>` link "
        "(infra sets it to the deployment's tenant).",
    )
    welcome_organisation: str | None = Field(
        None,
        alias="LICENSE_WELCOME_ORGANISATION",
        description="Your organisation's name as the welcome mail shows it (default: \"the organisation that "
        'invited you").',
    )
    welcome_format: Literal["html", "text"] = Field(
        "html",
        alias="LICENSE_WELCOME_FORMAT",
        description="Body of the welcome mail: `html` (welcome.html, autoescaped) or `text` (welcome.txt). Graph's "
        "JSON sendMail carries one body.",
    )
    welcome_template_dir: Path | None = Field(
        None,
        alias="LICENSE_WELCOME_TEMPLATE_DIR",
        description="Folder whose welcome templates (welcome.subject.txt, welcome.html, welcome.txt) override the "
        "built-in ones in shared/templates/licensing/, file by file.",
    )
    conversion_remove_guest_license: bool = Field(
        False,
        alias="CONVERSION_REMOVE_GUEST_LICENSE",
        description="When a guest guestwarden licensed becomes a Member (userType), take back that licence (the "
        "LICENSE_SKU assignment, or the LICENSE_GROUP_ID membership) and audit it with the conversion. Off: the "
        'conversion is audited and the licence kept (docs/licensing.md, "Conversions").',
    )

    def policy(self) -> LicensingPolicy:
        from shared.domain.licensing import LicensingPolicy

        return LicensingPolicy(
            mode=self.mode,
            sku_part_number=self.sku,
            disabled_plans=self.disabled_plans,
            group_id=self.group_id,
            default_usage_location=self.default_usage_location,
            usage_location_by_domain=dict(self.usage_location_by_domain),
            excluded_domains=self.excluded_domains,
        )

    @property
    def no_seat_retry(self) -> timedelta:
        return timedelta(minutes=self.no_seat_retry_minutes)

    def welcome(self, sender: str | None) -> WelcomeConfig | None:
        """The welcome mail's configuration, or None when LICENSE_WELCOME_MAIL is off (the settings' requirements
        make sure the sender and the tenant id are there when it is on)."""
        if not self.welcome_mail or not sender or not self.welcome_tenant_id:
            return None
        from shared.adapters.templates import LicensingTemplates
        from shared.services.licensing import WelcomeConfig

        return WelcomeConfig(
            templates=LicensingTemplates(self.welcome_template_dir),
            sender=sender,
            tenant_id=self.welcome_tenant_id,
            organisation=self.welcome_organisation or "the organisation that invited you",
            body_format=self.welcome_format,
        )


class MailSettings(Section):
    """The mailbox guestwarden sends from and the admins it alerts."""

    sender: Mailbox | None = Field(
        None,
        alias="MAIL_SENDER",
        description="UPN of the mailbox guestwarden sends from (restrict Mail.Send to it with Exchange RBAC "
        "for Applications).",
    )
    alert_recipients: CommaList[Mailbox] = Field(
        (),
        alias="ADMIN_ALERT_RECIPIENTS",
        description="Comma-separated addresses that get operational alerts (e.g. no free seats, once per SKU a day).",
    )

    def alerting(self) -> Alerting:
        from shared.services.licensing import Alerting

        return Alerting(self.sender, self.alert_recipients)


class RiskSettings(Section):
    """Flows 2/3: risk-blocked guests (docs/risk-blocked-guests.md)."""

    poll_schedule: NCrontab = Field(
        "0 */5 * * * *",
        alias="RISK_POLL_SCHEDULE",
        description="NCRONTAB of the sign-in poller that finds guests blocked because of risk.",
    )
    lookback_minutes: Annotated[int, Field(ge=5, le=1440)] = Field(
        120,
        alias="RISK_LOOKBACK_MINUTES",
        description="Each poll re-reads this many minutes before its watermark (sign-in logs arrive late); "
        "the first poll reads this far back. 5-1440.",
    )
    quiet_minutes: Annotated[int, Field(ge=5, le=10080)] = Field(
        720,
        alias="RISK_QUIET_MINUTES",
        description="A guest's risk blocks are one incident (one mail, one ticket) until the guest has had no "
        "risk block for this many minutes. 5-10080.",
    )
    organisation_name: str | None = Field(
        None,
        alias="RISK_ORGANISATION_NAME",
        description="Our organisation's name as guests know it, used in the guest notice and the ticket.",
    )
    support_contact: str | None = Field(
        None,
        alias="RISK_SUPPORT_CONTACT",
        description="Whom a blocked guest may contact on our side (an address or a URL), shown in the notice.",
    )
    template_dir: Path | None = Field(
        None,
        alias="RISK_TEMPLATE_DIR",
        description="Folder whose notice templates (notice.html, notice.txt, subject.txt, ticket.txt) "
        "override the built-in ones in shared/templates/risk/.",
    )
    notice_format: Literal["html", "text"] = Field(
        "html",
        alias="RISK_NOTICE_FORMAT",
        description="Body of the guest notice: `html` (notice.html, autoescaped) or `text` (notice.txt); the "
        "daily digest follows it (digest.html or digest.txt). Graph's JSON sendMail carries one body.",
    )
    partner_directory: Path | None = Field(
        None,
        alias="RISK_PARTNER_DIRECTORY",
        description="JSON file mapping home tenant id or domain -> ticket sink, with a required default sink "
        "(schema in docs/risk-blocked-guests.md). Empty = no home-tenant tickets (audited as skipped).",
    )
    partners: PartnerDirectory | None = Field(None, exclude=True)
    """RISK_PARTNER_DIRECTORY's content: read, validated and its secrets resolved by `load_settings` (when the
    risk feature is asked for), not an app setting of its own."""
    ticket_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        4,
        alias="RISK_TICKET_ATTEMPTS",
        description="Attempts per delivery of a ticket to its sink before the message is abandoned (Service "
        "Bus then redelivers it, and dead-letters it after maxDeliveryCount).",
    )
    ticket_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = Field(
        15.0,
        alias="RISK_TICKET_TIMEOUT_SECONDS",
        description="HTTP timeout of one call to a ticket sink (webhook, ServiceNow), seconds.",
    )
    digest_enabled: bool = Field(
        False,
        alias="RISK_DIGEST_ENABLED",
        description="`true`: mail ADMIN_ALERT_RECIPIENTS (from MAIL_SENDER) a daily digest of risk incidents "
        "(the last 24 h and those still open); nothing is sent on a day with nothing to report.",
    )
    digest_schedule: NCrontab = Field(
        "0 0 7 * * *",
        alias="RISK_DIGEST_SCHEDULE",
        description="NCRONTAB of the daily risk digest timer (at most one digest per UTC day, whatever the "
        "schedule says).",
    )

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)

    @property
    def quiet(self) -> timedelta:
        return timedelta(minutes=self.quiet_minutes)


class StaleSettings(Section):
    """Flow 4: the stale-guest sweep (docs/stale-guests.md)."""

    sweep_schedule: NCrontab = Field(
        "0 0 2 * * *",
        alias="STALE_SWEEP_SCHEDULE",
        description="NCRONTAB of the nightly stale-guest sweep.",
    )
    resume_schedule: NCrontab = Field(
        "0 */5 * * * *",
        alias="STALE_RESUME_SCHEDULE",
        description="NCRONTAB of the resume timer: it continues a sweep whose invocation ended its time slice, "
        "timed out or died (after its lease), and does nothing (one state read) when no run is unfinished.",
    )
    slice_minutes: Annotated[float, Field(ge=0, le=600)] = Field(
        25,
        alias="STALE_SWEEP_SLICE_MINUTES",
        description="How long one timer invocation works on a sweep before it saves the run and leaves the rest "
        "to the resume timer; keep it under host.json's functionTimeout (30 minutes). 0: no limit.",
    )
    lease_seconds: Annotated[int, Field(ge=10, le=3600)] = Field(
        300,
        alias="STALE_SWEEP_LEASE_SECONDS",
        description="A sweep (and each action it claims) belongs to the invocation working on it for this long "
        "after its last sign of life (renewed at every page and batch); a run whose invocation died is continued "
        "after it. Longer than any single Graph request with its retries.",
    )
    resume_max_hours: Annotated[float, Field(gt=0, le=168)] = Field(
        20,
        alias="STALE_RESUME_MAX_HOURS",
        description="An unfinished sweep older than this is abandoned (audited) and the next run decides again "
        "from fresh data, instead of acting on a plan made from old sign-in data.",
    )
    dry_run: bool = Field(
        True,
        alias="STALE_DRY_RUN",
        description="`true` (the default): the sweep only plans and reports. Set `false` to warn, disable and "
        "delete for real.",
    )
    inactive_days: Annotated[int, Field(ge=30, le=3650)] = Field(
        90,
        alias="STALE_INACTIVE_DAYS",
        description="A guest is stale after this many days without any sign-in (interactive, non-interactive "
        "or successful); a guest who never signed in counts from acceptance. 30-3650.",
    )
    pending_days: Annotated[int, Field(ge=7, le=3650)] = Field(
        30,
        alias="STALE_PENDING_DAYS",
        description="An invitation not redeemed after this many days is stale. 7-3650.",
    )
    warn_grace_days: Annotated[int, Field(ge=1, le=365)] = Field(
        14,
        alias="STALE_WARN_GRACE_DAYS",
        description="Days between the warning (sponsors mailed) and disabling the account. 1-365.",
    )
    delete_grace_days: Annotated[int, Field(ge=1, le=365)] = Field(
        30,
        alias="STALE_DELETE_GRACE_DAYS",
        description="Days between disabling and the (soft, 30-day restorable) delete. 1-365.",
    )
    new_guest_grace_days: Annotated[int, Field(ge=0, le=365)] = Field(
        14,
        alias="STALE_NEW_GUEST_GRACE_DAYS",
        description="Guests created within this many days are never acted on. 0-365.",
    )
    max_actions: Annotated[int, Field(ge=0, le=100000)] = Field(
        50,
        alias="STALE_MAX_ACTIONS",
        description="A run that would warn, disable or delete more guests than this acts on nobody (the plan "
        "is kept in the report for review).",
    )
    max_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        10.0,
        alias="STALE_MAX_PERCENT",
        description="Same cap as a percentage of all guests (0-100); both caps apply.",
    )
    abort_missing_activity_percent: Annotated[float, Field(ge=1, le=100)] = Field(
        50.0,
        alias="STALE_ABORT_MISSING_ACTIVITY_PERCENT",
        description="Abort when more than this percentage of the guests who redeemed their invitation have no "
        "signInActivity at all (data that looks wrong; a tenant without Entra ID P1/P2 or an app without "
        "AuditLog.Read.All gets a 403 instead, which always aborts). Pending invitations never count.",
    )
    scan_concurrency: Annotated[int, Field(ge=1, le=16)] = Field(
        8,
        alias="STALE_SCAN_CONCURRENCY",
        description="How many createdDateTime ranges of the guest list the sweep pages at once (1-16; 1 pages "
        "one nextLink chain). Used only when latency, not the signInActivity quota, is the limit: with "
        "GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE at 60 or less (Graph's quota is 10) one chain is read.",
    )
    exclude_group_ids: CommaList[Guid] = Field(
        (),
        alias="STALE_EXCLUDE_GROUP_IDS",
        description="Comma-separated object ids of groups whose members are never acted on, members of groups "
        "nested in them included (transitive members; needs GroupMember.Read.All).",
    )
    exclude_group_max_members: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        50_000,
        alias="STALE_EXCLUDE_GROUP_MAX_MEMBERS",
        description="The most transitive members (users, nested groups, devices, contacts) one exclusion group may "
        "have. The sweep reads every exclusion group whole before judging anyone; a group past this is most likely "
        "the wrong one (all users, a dynamic group of every guest) and would be paged for a long time, so the run "
        "stops at the first page past it, before acting, with a message naming the group (status aborted).",
    )
    exclude_domains: CommaSet[DomainName] = Field(
        frozenset(),
        alias="STALE_EXCLUDE_DOMAINS",
        description="Comma-separated home domains whose guests are never acted on.",
    )
    exclude_upn_patterns: CommaList[str] = Field(
        (),
        alias="STALE_EXCLUDE_UPN_PATTERNS",
        description="Comma-separated UPN patterns (`*` and `?`, case-insensitive), e.g. `auditor*`.",
    )
    notify_guest: bool = Field(
        False,
        alias="STALE_NOTIFY_GUEST",
        description="Also mail the guest at the warning (sponsors are always mailed).",
    )
    template_dir: Path | None = Field(
        None,
        alias="STALE_TEMPLATE_DIR",
        description="Folder whose mail/report templates override the built-in ones in shared/templates/stale/ "
        "(and, in its `attest/` subfolder, the attestation page shared/templates/attest/page.html).",
    )
    reclaim_licenses: bool = Field(
        True,
        alias="STALE_RECLAIM_LICENSES",
        description='When the sweep (or a sponsor\'s "remove now") disables a guest, take back its directly '
        "assigned licences and its membership of LICENSE_GROUP_ID, record them, and give them back when the "
        "guest returns (re-enabled, restored, kept) if seats allow; admins are mailed when they do not.",
    )
    fallback_reviewers: CommaList[Mailbox] = Field(
        (),
        alias="STALE_FALLBACK_REVIEWERS",
        description="Comma-separated mailboxes that get a guest's warning (and attestation link) when the guest "
        "has no sponsor with a mail address. Empty: such warnings are recorded but go to nobody.",
    )
    attest_signing_key: SigningKey | None = Field(
        None,
        alias="STALE_ATTEST_SIGNING_KEY",
        description="HMAC key (32+ characters; a Key Vault reference in Azure) that signs the sponsors' "
        "attestation links in warning mails. Set it (with STALE_ATTEST_BASE_URL) to turn the links on; "
        "rotation: docs/stale-guests.md.",
    )
    attest_previous_keys: SigningKeys | None = Field(
        None,
        alias="STALE_ATTEST_PREVIOUS_KEYS",
        description="Comma-separated earlier signing keys: links they signed still work (rotation); remove one "
        "once STALE_ATTEST_LINK_DAYS have passed since it stopped signing.",
    )
    attest_base_url: PublicOrigin | None = Field(
        None,
        alias="STALE_ATTEST_BASE_URL",
        description="The app's public origin (https://<app>.azurewebsites.net) that attestation links point to "
        "(`/api/attest`).",
    )
    attest_keep_days: Annotated[int, Field(ge=1, le=365)] = Field(
        90,
        alias="STALE_ATTEST_KEEP_DAYS",
        description="A sponsor's \"keep\" stops the guest's pending disable/delete and leaves it alone for this many "
        "days (1-365); if it is still inactive then, it is warned again.",
    )
    attest_link_days: Annotated[int, Field(ge=0, le=730)] = Field(
        0,
        alias="STALE_ATTEST_LINK_DAYS",
        description="How long an attestation link stays valid; 0 (the default): until the planned deletion "
        "(STALE_WARN_GRACE_DAYS + STALE_DELETE_GRACE_DAYS), so a sponsor can still keep a disabled guest.",
    )
    attest_max_removals_per_day: Annotated[int, Field(ge=0, le=10000)] = Field(
        20,
        alias="STALE_ATTEST_MAX_REMOVALS_PER_DAY",
        description='At most this many guests a UTC day are disabled by sponsors\' "remove now" answers; more are '
        'refused (audited) and left to the nightly sweep. 0 turns "remove now" off.',
    )

    reinvite_pending: bool = Field(
        True,
        alias="STALE_REINVITE_PENDING",
        description="When the sweep warns about a guest that never redeemed its invitation, Graph sends the "
        "invitation again, once per lifecycle episode, before the guest can be disabled or deleted (POST "
        "/invitations; needs User.Invite.All in a real sweep). A dry run only shows `would re-invite`.",
    )
    reinvite_message: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        DEFAULT_MESSAGE,
        alias="STALE_REINVITE_MESSAGE",
        description="The personal message of the re-sent invitation (Graph's invitedUserMessageInfo."
        "customizedMessageBody, plain text). `{disable_on}` and `{delete_on}` become the dates the warning sets.",
    )
    reinvite_redirect_url: HttpsUrl = Field(
        DEFAULT_REDIRECT_URL,
        alias="STALE_REINVITE_REDIRECT_URL",
        description="Where Graph sends the guest after redeeming the re-sent invitation (inviteRedirectUrl). "
        "infra/ sets the tenant-specific https://myapps.microsoft.com/?tenantid=<tenant>.",
    )

    def policy(self, *, licensing_group_id: str | None = None) -> StalePolicy:
        """Thresholds and exclusions, in domain terms (shared.domain.stale); the licensing group (from the
        licensing settings) is the one whose membership a disable takes back."""
        from shared.domain.stale import StalePolicy

        return StalePolicy(
            inactive_days=self.inactive_days,
            pending_days=self.pending_days,
            warn_grace_days=self.warn_grace_days,
            delete_grace_days=self.delete_grace_days,
            new_guest_grace_days=self.new_guest_grace_days,
            exclude_group_ids=frozenset(self.exclude_group_ids),
            exclude_domains=self.exclude_domains,
            exclude_upn_patterns=self.exclude_upn_patterns,
            reclaim_licenses=self.reclaim_licenses,
            licensing_group_id=licensing_group_id,
            reinvite_pending=self.reinvite_pending,
        )

    def attestation(self) -> AttestConfig | None:
        """The attestation links' settings, or None when they are off (no signing key)."""
        from shared.services.attestation import AttestConfig

        if self.attest_signing_key is None or not self.attest_base_url:
            return None
        previous = reveal(self.attest_previous_keys).split(",")
        return AttestConfig(
            keys=(reveal(self.attest_signing_key), *(k.strip() for k in previous if k.strip())),
            base_url=self.attest_base_url,
            keep_days=self.attest_keep_days,
            link_days=self.attest_link_days or self.warn_grace_days + self.delete_grace_days,
            max_removals_per_day=self.attest_max_removals_per_day,
            fallback_reviewers=self.fallback_reviewers,
            dry_run=self.dry_run,
        )

    def config(
        self, *, sign_in_activity_per_minute: int, mail_sender: str | None, alert_recipients: tuple[str, ...] = ()
    ) -> StaleConfig:
        """How the sweep runs; the quota it paces to, the sender and the admins come from the Graph and mail
        settings."""
        from shared.domain.reinvite import ReinviteConfig
        from shared.services.licensing import Alerting
        from shared.services.stale import StaleConfig

        return StaleConfig(
            dry_run=self.dry_run,
            max_actions=self.max_actions,
            max_percent=self.max_percent,
            abort_missing_activity_percent=self.abort_missing_activity_percent,
            scan_concurrency=self.scan_concurrency,
            sign_in_activity_per_minute=sign_in_activity_per_minute,
            notify_guest=self.notify_guest,
            mail_sender=mail_sender,
            lease_seconds=self.lease_seconds,
            slice_seconds=self.slice_minutes * 60,
            resume_max_hours=self.resume_max_hours,
            fallback_reviewers=self.fallback_reviewers,
            attest=self.attestation(),
            alerting=Alerting(mail_sender, alert_recipients),
            exclude_group_max_members=self.exclude_group_max_members,
            reinvite=ReinviteConfig(redirect_url=self.reinvite_redirect_url, message=self.reinvite_message),
        )


class PostureSettings(Section):
    """The guest posture checks (docs/posture.md): `guestwarden posture` and the nightly posture timer."""

    schedule: NCrontab = Field(
        "0 30 1 * * *",
        alias="POSTURE_SCHEDULE",
        description="NCRONTAB of the nightly posture checks (before the stale sweep, whose HTML report shows the "
        "latest result as its posture section).",
    )
    guest_group_id: Guid | None = Field(
        None,
        alias="POSTURE_GUEST_GROUP_ID",
        description="Object id of the group that holds every guest (seed 000's advice: exclude it from risk-based "
        "Conditional Access policies). A risk policy that excludes it counts as leaving guests out.",
    )
    hygiene: bool = Field(
        True,
        alias="POSTURE_HYGIENE",
        description="`true`: count guests without a sponsor, never signed in, pending too long and licensed while "
        "inactive (reads every guest with signInActivity and its sponsors: the checks' one costly read).",
    )
    blocked_days: Annotated[int, Field(ge=1, le=30)] = Field(
        30,
        alias="POSTURE_BLOCKED_DAYS",
        description="How many days of sign-in logs the risk check counts guests blocked by home-tenant risk in "
        "(Entra keeps sign-in logs 30 days). 1-30.",
    )
    hygiene_fail_percent: Annotated[int, Field(ge=1, le=100)] = Field(
        25,
        alias="POSTURE_HYGIENE_FAIL_PERCENT",
        description="The hygiene check fails when one of its counts holds more than this share of the guests "
        "(any guest in one warns). 1-100.",
    )

    def config(self, stale: StaleSettings) -> PostureConfig:
        """The checks' configuration; the hygiene thresholds are the sweep's (STALE_PENDING_DAYS and
        STALE_INACTIVE_DAYS)."""
        from shared.services.posture import PostureConfig

        return PostureConfig(
            pending_days=stale.pending_days,
            inactive_days=stale.inactive_days,
            guest_group_id=self.guest_group_id,
            hygiene=self.hygiene,
            blocked_days=self.blocked_days,
            fail_ratio=self.hygiene_fail_percent / 100,
        )


class ReportSettings(Section):
    """Where the sweep writes its reports: a folder or a Blob container."""

    folder: Path = Field(
        Path(".guestwarden/reports"),
        alias="STALE_REPORT_DIR",
        description="Folder the sweep writes its CSV and HTML reports to when REPORT_STORE=folder.",
    )
    store: Literal["folder", "blob"] = Field(
        "folder",
        alias="REPORT_STORE",
        description="Where the sweep's reports go: `folder` (STALE_REPORT_DIR) or `blob` (the Azure Blob Storage "
        "container REPORT_BLOB_CONTAINER; needs REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL).",
    )
    blob_connection: BlobConnectionString | None = Field(
        None,
        alias="REPORT_BLOB_CONNECTION",
        description="Blob Storage connection string for REPORT_STORE=blob (Azurite, key-based accounts); "
        "wins over REPORT_BLOB_ACCOUNT_URL.",
    )
    blob_account_url: BlobAccountUrl | None = Field(
        None,
        alias="REPORT_BLOB_ACCOUNT_URL",
        description="Blob endpoint (https://<account>.blob.core.windows.net) for REPORT_STORE=blob with the "
        "managed identity (AZURE_CLIENT_ID), which needs Storage Blob Data Contributor on the account.",
    )
    blob_container: ContainerName = Field(
        "guestwarden-reports",
        alias="REPORT_BLOB_CONTAINER",
        description="Container for REPORT_STORE=blob, created if missing; each run's reports go under "
        "`stale/<run id>/`. 3-63 lower-case letters, digits and single hyphens.",
    )


class ObservabilitySettings(Section):
    """Azure Monitor: on only when the Functions platform hands the app an Application Insights connection string."""

    connection_string: SecretStr | None = Field(
        None,
        alias="APPLICATIONINSIGHTS_CONNECTION_STRING",
        description="Application Insights connection string (set by infra from the monitoring module; the "
        "Functions host reads it too). Set: audit records and metrics go to Azure Monitor; empty: logs only.",
        json_schema_extra={"key_vault": False},
    )


class DashboardSettings(Section):
    """The operator dashboard (functions/dashboard.py, docs/dashboard.md): off until it has a signing key."""

    signing_key: SigningKey | None = Field(
        None,
        alias="DASHBOARD_SIGNING_KEY",
        description="HMAC key (>= 32 characters; a Key Vault reference in Azure) for the dashboard's anti-forgery "
        "codes. Set it (with DASHBOARD_BASE_URL) to serve the dashboard at /api/dashboard; unset, it answers 404.",
    )
    base_url: PublicOrigin | None = Field(
        None,
        alias="DASHBOARD_BASE_URL",
        description="The dashboard's public origin (https://<app>.azurewebsites.net): a POST whose Origin is "
        "another one is refused.",
    )
    dev_signin: str | None = Field(
        None,
        alias="DASHBOARD_DEV_SIGNIN",
        description="Local development only: `<name>:<role>[+<role>]` (e.g. `dev@contoso.com:GuestWarden.Operator`) "
        "signs in every request that App Service Authentication did not. Refused when the app runs in Azure "
        "(WEBSITE_SITE_NAME or WEBSITE_INSTANCE_ID set).",
        json_schema_extra={"key_vault": False},
    )
    page_size: Annotated[int, Field(ge=10, le=500)] = Field(
        50, alias="DASHBOARD_PAGE_SIZE", description="Guests per page of the dashboard's guest list."
    )
