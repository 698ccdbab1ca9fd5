"""Telemetry: Azure Monitor (OpenTelemetry) when configured, a correlation id on every log record, and counters.

- `configure_telemetry(settings)` starts the Azure Monitor OpenTelemetry distro once per process, only when
  APPLICATIONINSIGHTS_CONNECTION_STRING is set (settings.observability; shared.bootstrap hands the settings
  in). The distro is imported there and nowhere else: it is heavy, and a cold start (Graph's 10 s validation
  handshake) must not pay for it when telemetry is off.
- The correlation id travels from the webhook (it generates one per notification POST and stamps every
  Service Bus message with it) through the queue to the action: queue-triggered functions enter
  `observed_message`, which puts the message's correlation id in a context variable, and a log record factory
  copies it onto every record as `correlation_id` (a custom dimension in Application Insights).
- Counters (OpenTelemetry metrics API; no-ops until a meter provider is configured):
  `guestwarden.actions{actor,action,outcome,dry_run}`: one per audit entry. The audit log is the one place every
  action is recorded, so `CountingStateStore` counts licences assigned, risk incidents, notices, tickets and
  stale actions without touching any service; it also logs each entry as one structured line on the
  `guestwarden.audit` logger (event=audit, action, outcome, subject, correlation_id).
  `guestwarden.dead_lettered{queue,error}`: a queue-triggered function failed on the message's last delivery
  (the queue's maxDeliveryCount, `MAX_DELIVERY_COUNT`), so Service Bus dead-letters it.

docs/observability.md has the KQL for the admin's daily look.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any, Protocol

from opentelemetry import metrics

from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.ports.state import AuditEntry, Claim, JSONInput, Record, StateStore
from shared.settings import Settings

APPINSIGHTS_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUDIT_LOGGER = "guestwarden.audit"
TELEMETRY_LOGGER = "guestwarden"
"""The logger whose records the Azure Monitor exporter sends with their custom dimensions (module loggers reach
Application Insights through the Functions host, as plain traces)."""

MAX_DELIVERY_COUNT = {GUEST_CHANGES_QUEUE: 10, RISK_INCIDENTS_QUEUE: 8}
"""Each queue's maxDeliveryCount as infra/modules/servicebus.bicep sets it (a test keeps them equal)."""

_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("guestwarden_correlation_id", default="")
log = logging.getLogger(TELEMETRY_LOGGER)
audit_log = logging.getLogger(AUDIT_LOGGER)


# --- correlation id ----------------------------------------------------------------------------------------


def current_correlation_id() -> str:
    return _correlation_id.get()


@contextlib.contextmanager
def correlation(correlation_id: str) -> Iterator[None]:
    """Every log record made inside carries `correlation_id` (contextvars: safe across concurrent invocations)."""
    token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _correlation_id.reset(token)


class _Factory(Protocol):
    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord: ...


_installed_factory: _Factory | None = None


def install_log_correlation() -> None:
    """Stamp `correlation_id` on every log record, whatever handler (the Functions worker's, the exporter's)
    receives it. A record factory rather than a handler filter, because handlers come and go with the host.
    Idempotent. To log with another id, enter `correlation(...)`: `extra` cannot set `correlation_id`."""
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is _installed_factory:
        return
    previous: _Factory = current

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.correlation_id = _correlation_id.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed_factory = factory


# --- counters ----------------------------------------------------------------------------------------------


def _meter() -> metrics.Meter:
    return metrics.get_meter("guestwarden")


def count_action(entry: AuditEntry) -> None:
    _meter().create_counter("guestwarden.actions", description="Actions and decisions, one per audit entry").add(
        1,
        {"actor": entry.actor, "action": entry.action, "outcome": entry.outcome, "dry_run": entry.dry_run},
    )


def count_dead_letter(queue: str, error: str) -> None:
    _meter().create_counter(
        "guestwarden.dead_lettered", description="Messages that failed their last delivery (dead-lettered)"
    ).add(1, {"queue": queue, "error": error})


class _Message(Protocol):
    @property
    def message_id(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def delivery_count(self) -> int | None: ...


@contextlib.contextmanager
def observed_message(queue: str, msg: _Message) -> Iterator[str]:
    """Handle one Service Bus message: its correlation id (else its message id) goes on every log record, and a
    failure on the last allowed delivery is counted and logged as dead-lettered. Yields the correlation id."""
    correlation_id = msg.correlation_id or msg.message_id or ""
    with correlation(correlation_id):
        try:
            yield correlation_id
        except Exception as exc:
            deliveries = msg.delivery_count or 1
            if deliveries >= MAX_DELIVERY_COUNT.get(queue, 10):
                count_dead_letter(queue, type(exc).__name__)
                log.error(
                    "message %s on %s dead-lettered after %d deliveries: %s",
                    msg.message_id,
                    queue,
                    deliveries,
                    type(exc).__name__,
                    extra={"event": "dead-letter", "queue": queue, "deliveries": deliveries},
                )
            raise


class CountingStateStore(StateStore):
    """The state store, counting and logging each audit entry once it is stored. Everything else delegates."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        install_log_correlation()

    async def append(self, entry: AuditEntry) -> None:
        await self.inner.append(entry)
        self._counted(entry)

    def _counted(self, entry: AuditEntry) -> None:
        count_action(entry)
        with correlation(entry.correlation_id or _correlation_id.get()):
            audit_log.info(
                "%s %s %s: %s%s",
                entry.actor,
                entry.action,
                entry.subject,
                entry.outcome,
                " (dry run)" if entry.dry_run else "",
                extra={
                    "event": "audit",
                    "actor": entry.actor,
                    "action": entry.action,
                    "subject": entry.subject,
                    "outcome": entry.outcome,
                    "dry_run": entry.dry_run,
                },
            )

    def query(
        self, since: datetime, until: datetime | None = None, *, subject: str | None = None, action: str | None = None
    ) -> AsyncIterator[AuditEntry]:
        return self.inner.query(since, until, subject=subject, action=action)

    async def get(self, kind: str, key: str) -> Record | None:
        return await self.inner.get(kind, key)

    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        return await self.inner.put(kind, key, value, etag=etag)

    async def delete(self, kind: str, key: str, *, etag: str = "*") -> None:
        await self.inner.delete(kind, key, etag=etag)

    def list_records(self, kind: str) -> AsyncIterator[Record]:
        return self.inner.list_records(kind)

    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Claim:
        return await self.inner.claim(action, subject, scope, owner=owner, lease_seconds=lease_seconds)

    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        done = await self.inner.complete(claim, outcome, audit=audit)
        if audit is not None:
            self._counted(audit)
        return done

    async def flush_outbox(self) -> int:
        return await self.inner.flush_outbox()

    async def release(self, claim: Claim) -> bool:
        return await self.inner.release(claim)

    async def close(self) -> None:
        await self.inner.close()


# --- Azure Monitor -----------------------------------------------------------------------------------------

_configured = False


def telemetry_enabled(settings: Settings) -> bool:
    """Azure Monitor is on only when the Application Insights connection string is set."""
    return settings.observability.connection_string is not None


def configure_telemetry(settings: Settings) -> bool:
    """Start the Azure Monitor distro once, if APPLICATIONINSIGHTS_CONNECTION_STRING is set; returns whether it
    is on. With AZURE_CLIENT_ID the exporter authenticates with that managed identity (the resource refuses
    keys: infra/modules/monitoring.bicep). Records of the `guestwarden` loggers are exported with their
    custom dimensions; the connection string is never logged."""
    global _configured
    install_log_correlation()
    connection_string = settings.observability.connection_string
    if _configured or connection_string is None:
        return _configured
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = ManagedIdentityCredential(client_id=settings.azure_client_id) if settings.azure_client_id else None
    try:
        configure_azure_monitor(
            connection_string=connection_string.get_secret_value().strip(),
            credential=credential,
            logger_name=TELEMETRY_LOGGER,
        )
    except Exception as exc:  # telemetry must never stop guests being licensed; the error names no secret
        log.error(
            "telemetry: %s is not usable (%s); running without Azure Monitor", APPINSIGHTS_SETTING, type(exc).__name__
        )
        return False
    logging.getLogger(TELEMETRY_LOGGER).setLevel(logging.INFO)
    _configured = True
    log.info("telemetry: Azure Monitor exporter on")
    return True
