"""The only place that chooses adapters and wires services.

Settings decide everything: Azure or the local world is never a code path of its own. Functions, the CLI and
the demo all come through here.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.servicebus.aio import ServiceBusClient

from shared.adapters.credentials import (
    LOCAL_OPERATOR_CLIENT_ID,
    LocalTokenCredential,
    local_token_url,
    managed_identity_credential,
)
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.adapters.queue import ServiceBusPublisher
from shared.adapters.risk_wiring import RiskWiring
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.observability import CountingStateStore, configure_telemetry
from shared.ports.clock import Clock, utc_now
from shared.ports.publisher import MessagePublisher
from shared.ports.reports import ReportStore
from shared.ports.state import StateStore
from shared.services.attestation import AttestDeps
from shared.services.conversion import ConversionDeps
from shared.services.deadletters import DeadLetterDeps
from shared.services.delta import DeltaDeps
from shared.services.licensing import LicensingDeps, WelcomeConfig
from shared.services.posture import PostureDeps
from shared.services.risk_detection import DetectionDeps
from shared.services.risk_digest import DigestDeps
from shared.services.risk_response import ResponseDeps
from shared.services.stale import StaleDeps
from shared.services.subscriptions import SubscriptionConfig, SubscriptionDeps, known_subscription_ids
from shared.services.webhook import WebhookDeps
from shared.settings import Feature, Settings, SettingsError, load_settings, reveal

if TYPE_CHECKING:
    from shared.adapters.graph.admin import GraphAdminGateway
    from shared.adapters.queue_admin import OperatorQueues


def settings_from_env(features: Iterable[Feature] = tuple(Feature), env: Mapping[str, str] | None = None) -> Settings:
    """Validate the process's app settings once (raises SettingsError naming every problem)."""
    return load_settings(os.environ if env is None else env, features)


def graph_credential(settings: Settings) -> AsyncTokenCredential:
    """The app's identity: the managed identity in Azure; on the simulator, the token endpoint's token for
    AZURE_CLIENT_ID (default: guestwarden's identity), carrying the roles the fixture grants it."""
    if settings.graph.auth == "local-token":
        return LocalTokenCredential(
            token_url=local_token_url(settings.graph.base_url), client_id=settings.azure_client_id
        )
    return managed_identity_credential(settings.azure_client_id)


def operator_credential(settings: Settings) -> AsyncTokenCredential:
    """Who runs `setup grant-permissions` / `doctor --identity`: DefaultAzureCredential (your az login) in Azure;
    on the simulator, the sample tenant's automation identity (LOCAL_OPERATOR_CLIENT_ID)."""
    if settings.graph.auth == "local-token":
        return LocalTokenCredential(
            token_url=local_token_url(settings.graph.base_url), client_id=LOCAL_OPERATOR_CLIENT_ID
        )
    return managed_identity_credential(settings.azure_client_id)


def graph_config(settings: Settings) -> GraphConfig:
    return settings.graph.config()


def build_graph_gateway(settings: Settings) -> GraphGateway:
    """A gateway for the running event loop (msgraph clients cannot outlive their loop)."""
    return GraphGateway(graph_credential(settings), graph_config(settings))


def build_graph_admin(settings: Settings, credential: AsyncTokenCredential) -> GraphAdminGateway:
    """Service principals and app role assignments, for the operator CLI (`setup grant-permissions`, `doctor`):
    with `operator_credential` to grant roles or read another principal's, with `graph_credential` to see what
    the app itself is granted. The caller owns `credential` (the gateway does not close it)."""
    from shared.adapters.graph.admin import GraphAdminGateway

    return GraphAdminGateway(credential, graph_config(settings))


def build_state_store(settings: Settings, clock: Clock = utc_now) -> StateStore:
    """SQLite (embedded, the default for the demo) or Azure Table Storage (production), by STATE_BACKEND.

    Adapters are imported here, not at module top: a process only loads the one it uses. `clock` judges
    lease expiry (the app's clock: AppServices).
    """
    if settings.state.backend == "sqlite":
        from shared.adapters.state.sqlite import SqliteStateStore

        return SqliteStateStore(settings.state.sqlite_path, clock=clock)
    from shared.adapters.state.table import TableStateStore

    if settings.state.table_connection is not None:
        return TableStateStore(
            connection_string=settings.state.table_connection.get_secret_value(),
            table_prefix=settings.state.table_prefix,
            clock=clock,
        )
    return TableStateStore(
        endpoint=settings.state.table_endpoint,
        managed_identity_client_id=settings.azure_client_id,
        table_prefix=settings.state.table_prefix,
        clock=clock,
    )


def servicebus_client(settings: Settings) -> ServiceBusClient:
    """Service Bus by connection string (local broker, key-based) or by namespace + managed identity."""
    if settings.servicebus.connection is not None:
        return ServiceBusClient.from_connection_string(settings.servicebus.connection.get_secret_value())
    assert settings.servicebus.namespace, "settings require a connection string or a namespace"
    return ServiceBusClient(settings.servicebus.namespace, managed_identity_credential(settings.azure_client_id))


def build_publisher(settings: Settings) -> MessagePublisher:
    return ServiceBusPublisher(servicebus_client(settings))


def build_operator_queues(settings: Settings) -> OperatorQueues:
    """Queue probes and dead letters for the operator CLI, on the same connection as the app."""
    from shared.adapters.queue_admin import OperatorQueues

    return OperatorQueues(servicebus_client(settings))


OPERATOR_QUEUES = (GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)
"""guestwarden's queues: the only ones whose dead letters are counted, shown and resubmitted."""


def dead_letter_deps(settings: Settings, state: StateStore, clock: Clock = utc_now) -> DeadLetterDeps | None:
    """Dead letters for the timer and the dashboard (a Service Bus client per call); None without Service Bus."""
    from shared.adapters.queue_admin import ServiceBusDeadLetters

    if settings.servicebus.connection is None and not settings.servicebus.namespace:
        return None
    return DeadLetterDeps(ServiceBusDeadLetters(lambda: servicebus_client(settings)), state, clock, OPERATOR_QUEUES)


def subscription_config(settings: Settings) -> SubscriptionConfig:
    return settings.subscriptions.config()


def build_report_store(settings: Settings) -> ReportStore:
    """A folder (REPORT_STORE=folder, the default) or an Azure Blob Storage container (REPORT_STORE=blob), by
    connection string or by account URL with the managed identity (AZURE_CLIENT_ID)."""
    from shared.adapters.reports import BlobReportStore, LocalFolderReportStore

    s = settings
    if s.reports.store == "folder":
        return LocalFolderReportStore(s.reports.folder)
    if s.reports.blob_connection is not None:
        return BlobReportStore.from_connection_string(
            s.reports.blob_connection.get_secret_value(), s.reports.blob_container
        )
    if not s.reports.blob_account_url:
        raise SettingsError(
            ["REPORT_BLOB_CONNECTION or REPORT_BLOB_ACCOUNT_URL: one is required when REPORT_STORE=blob"]
        )
    return BlobReportStore.from_account_url(
        s.reports.blob_account_url,
        lambda: managed_identity_credential(s.azure_client_id),
        s.reports.blob_container,
    )


def stale_deps(settings: Settings, graph: GraphGateway, state: StateStore, clock: Clock = utc_now) -> StaleDeps:
    """The stale sweep's wiring (flow 4), shared by the timer and the CLI; REPORT_STORE picks where reports go."""
    from shared.adapters.templates import StaleTemplates

    s = settings
    return StaleDeps(
        graph=graph,
        state=state,
        reports=build_report_store(s),
        templates=StaleTemplates(s.stale.template_dir),
        policy=s.stale.policy(licensing_group_id=s.licensing.group_id if s.licensing.mode == "group" else None),
        config=s.stale.config(
            sign_in_activity_per_minute=s.graph.sign_in_activity_per_minute,
            mail_sender=s.mail.sender,
            alert_recipients=s.mail.alert_recipients,
        ),
        clock=clock,
    )


def attest_deps(
    settings: Settings, graph: GraphGateway, state: StateStore, clock: Clock = utc_now
) -> AttestDeps | None:
    """The attestation page's wiring (the HTTP function and the CLI); None when links are off."""
    from shared.adapters.templates import AttestTemplates

    config = settings.stale.attestation()
    if config is None:
        return None
    sweep = stale_deps(settings, graph, state, clock)  # what "remove now" takes back, who hears of a shortfall
    config = replace(config, reclaim=sweep.policy, alerting=sweep.config.alerting)
    return AttestDeps(graph, state, AttestTemplates(settings.stale.template_dir), config, clock)


def posture_deps(
    settings: Settings, graph: GraphGateway, state: StateStore | None, clock: Clock = utc_now
) -> PostureDeps:
    """The posture checks' wiring, shared by the nightly timer, the CLI and the doctor."""
    return PostureDeps(graph, state, settings.posture.config(settings.stale), clock)


APP_FEATURES = tuple(Feature)
"""The function app runs every flow, so every feature's settings are checked at start."""


class AppServices:
    """What the function app's flows share within one event loop: settings, Graph, state, queue.

    Built lazily on first use in a loop (clients are loop-bound) and reused by later invocations in that loop;
    settings are validated once per process.
    """

    _settings: ClassVar[Settings | None] = None
    _clock: ClassVar[Clock] = utc_now
    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AppServices]] = weakref.WeakKeyDictionary()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clock: Clock = type(self)._clock
        self.graph = build_graph_gateway(settings)
        # Every audit entry is also counted and logged (shared.observability): one place sees every action.
        self.state: StateStore = CountingStateStore(build_state_store(settings, self.clock))
        self.publisher = build_publisher(settings)
        self._risk: RiskWiring | None = None
        self._welcome: WelcomeConfig | None = settings.licensing.welcome(settings.mail.sender)
        """Built once: its templates are loaded (and a broken override refused) at start, not per message."""

    @classmethod
    def settings_once(cls) -> Settings:
        if cls._settings is None:
            cls._settings = settings_from_env(APP_FEATURES)
            configure_telemetry(cls._settings)  # Azure Monitor only when APPLICATIONINSIGHTS_CONNECTION_STRING is set
        return cls._settings

    @classmethod
    def current(cls) -> AppServices:
        loop = asyncio.get_running_loop()
        services = cls._by_loop.get(loop)
        if services is None:
            services = cls(cls.settings_once())
            cls._by_loop[loop] = services
        return services

    @classmethod
    async def close_current(cls) -> None:
        """Close the clients built for the running loop (end of a test, end of a local run)."""
        services = cls._by_loop.pop(asyncio.get_running_loop(), None)
        if services is not None:
            await services.aclose()

    @classmethod
    def use_clock(cls, clock: Clock) -> None:
        """The clock every flow reads from now on (default: the wall clock, all Azure has).

        A host that keeps its own time hands it in here before the first invocation; the local world hands in
        its simulator's clock, so a test that jumps the clock moves the app with it. reset() restores it.
        """
        cls._clock = clock
        cls._by_loop = weakref.WeakKeyDictionary()

    @classmethod
    def reset(cls) -> None:
        """Forget settings, clients and an injected clock (tests that change settings between runs)."""
        cls._settings = None
        cls._clock = utc_now
        cls._by_loop = weakref.WeakKeyDictionary()

    async def aclose(self) -> None:
        await self.graph.aclose()
        await self.publisher.close()
        await self.state.close()
        if self._risk is not None:
            await self._risk.aclose()

    def licensing(self) -> LicensingDeps:
        s = self.settings
        return LicensingDeps(
            graph=self.graph,
            state=self.state,
            publisher=self.publisher,
            queue=GUEST_CHANGES_QUEUE,
            policy=s.licensing.policy(),
            alerting=s.mail.alerting(),
            clock=self.clock,
            no_seat_retry=s.licensing.no_seat_retry,
            welcome=self._welcome,
        )

    def conversion(self) -> ConversionDeps:
        """Conversions to Member and identity drift of guests (shared.services.conversion), after licensing."""
        s = self.settings
        return ConversionDeps(
            graph=self.graph,
            state=self.state,
            policy=s.licensing.policy(),
            alerting=s.mail.alerting(),
            clock=self.clock,
            remove_guest_license=s.licensing.conversion_remove_guest_license,
        )

    def webhook(self) -> WebhookDeps:
        state = self.state
        return WebhookDeps(
            publisher=self.publisher,
            queue=GUEST_CHANGES_QUEUE,
            client_state=reveal(self.settings.subscriptions.client_state),
            subscription_ids=lambda: known_subscription_ids(state),
        )

    def subscriptions(self) -> SubscriptionDeps:
        return SubscriptionDeps(self.graph, self.state, subscription_config(self.settings), self.clock)

    def delta(self) -> DeltaDeps:
        return DeltaDeps(
            graph=self.graph,
            state=self.state,
            publisher=self.publisher,
            queue=GUEST_CHANGES_QUEUE,
            first_run=self.settings.delta.first_run,
            clock=self.clock,
        )

    # --- flow 4: stale guests ------------------------------------------------------------------------
    def stale(self) -> StaleDeps:
        return stale_deps(self.settings, self.graph, self.state, self.clock)

    def posture(self) -> PostureDeps:
        return posture_deps(self.settings, self.graph, self.state, self.clock)

    def dead_letters(self) -> DeadLetterDeps | None:
        """The dead-letter check (functions/queue_health.py); None without Service Bus."""
        return dead_letter_deps(self.settings, self.state, self.clock)

    def attestation(self) -> AttestDeps | None:
        """A sponsor's answer through its link (None: links are off, no STALE_ATTEST_SIGNING_KEY)."""
        return attest_deps(self.settings, self.graph, self.state, self.clock)

    # --- flows 2/3: risk-blocked guests ---------------------------------------------------------------
    def risk_detection(self) -> DetectionDeps:
        s = self.settings
        return DetectionDeps(
            graph=self.graph,
            state=self.state,
            publisher=self.publisher,
            queue=RISK_INCIDENTS_QUEUE,
            lookback=s.risk.lookback,
            quiet=s.risk.quiet,
            clock=self.clock,
        )

    def risk_response(self) -> ResponseDeps:
        if self._risk is None:
            self._risk = RiskWiring.build(self.settings, self.graph)
        s = self.settings
        assert s.mail.sender, "Feature.RISK requires MAIL_SENDER"
        return ResponseDeps(
            graph=self.graph,
            state=self.state,
            templates=self._risk.templates,
            sinks=self._risk.sinks,
            sender=s.mail.sender,
            organisation=s.risk.organisation_name,
            support_contact=s.risk.support_contact,
            notice_format=s.risk.notice_format,
            clock=self.clock,
            ticket_attempts=s.risk.ticket_attempts,
        )

    def risk_digest(self) -> DigestDeps:
        """The admins' daily digest; templates only (no partner directory, no sinks' HTTP client)."""
        from shared.adapters.templates import RiskTemplates

        s = self.settings
        templates = self._risk.templates if self._risk is not None else RiskTemplates(s.risk.template_dir)
        return DigestDeps(
            graph=self.graph,
            state=self.state,
            templates=templates,
            enabled=s.risk.digest_enabled,
            sender=s.mail.sender,
            recipients=s.mail.alert_recipients,
            organisation=s.risk.organisation_name,
            body_format=s.risk.notice_format,
            clock=self.clock,
        )


# --- the operator dashboard (functions/dashboard.py) ----------------------------------------------------------
if TYPE_CHECKING:
    from shared.services.dashboard import DashboardDeps
    from shared.services.stale.restore import RestoreOutcome


def dashboard_deps(
    settings: Settings,
    graph: GraphGateway,
    state: StateStore,
    clock: Clock = utc_now,
    env: Mapping[str, str] | None = None,
) -> DashboardDeps | None:
    """The dashboard's wiring; None when it is off (no DASHBOARD_SIGNING_KEY). `env` (the process's): in Azure
    (WEBSITE_SITE_NAME) the dashboard is served only behind App Service Authentication (WEBSITE_AUTH_ENABLED)."""
    from shared.adapters.templates import DashboardTemplates
    from shared.domain.dashboard import dev_principal
    from shared.services.attestation import operator_keep
    from shared.services.dashboard import DashboardConfig, DashboardDeps, GraphGuestNames
    from shared.services.stale import restore_run

    s = settings.dashboard
    if s.signing_key is None or not s.base_url:
        return None
    env = os.environ if env is None else env
    in_azure = bool(str(env.get("WEBSITE_SITE_NAME") or "").strip())
    config = DashboardConfig(
        key=reveal(s.signing_key),
        base_url=s.base_url,
        page_size=s.page_size,
        dev_principal=dev_principal(s.dev_signin) if s.dev_signin else None,
        platform_auth_missing=in_azure and str(env.get("WEBSITE_AUTH_ENABLED") or "").lower() != "true",
        renew_before=settings.subscriptions.config().renew_before,
    )
    sweep = stale_deps(settings, graph, state, clock)
    attest = attest_deps(settings, graph, state, clock)

    async def restore(run_id: str, actor: str) -> list[RestoreOutcome]:
        return await restore_run(run_id, sweep, actor=actor)

    async def keep(guest_id: str, actor: str) -> tuple[str, str]:
        assert attest is not None
        verdict = await operator_keep(attest, guest_id, actor)
        return verdict.status, verdict.detail

    return DashboardDeps(
        state=state,
        templates=DashboardTemplates(),
        names=GraphGuestNames(graph.get_users),
        config=config,
        policy=sweep.policy,
        clock=clock,
        restore_run=restore,
        keep_guest=keep if attest is not None else None,
        reports=sweep.reports,
        dead_letters=dead_letter_deps(settings, state, clock),
    )
