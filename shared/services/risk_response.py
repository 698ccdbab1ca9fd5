"""Use case: answer one risk incident: tell the guest how to unblock themselves, open a ticket at home.

Two steps on the same message, each its own idempotent step in the ledger, keyed (step, guest, incident):

* **notice** ("risk-notify"): re-read the user; a member (or a user gone) is never mailed; mail the guest's own
  address (`mail`, else otherMails) from MAIL_SENDER with the rendered template. sendMail is not idempotent:
  an answer that says it was not accepted (4xx) releases the claim and fails the message (retried); an
  answer that leaves it unknown (timeout, 5xx) is recorded as "uncertain" and NOT retried: at most one mail
  per incident. A marker written just before sendMail covers a worker killed mid-send: the next delivery finds
  it and records "uncertain" instead of mailing again.
* **ticket** ("risk-ticket"): the home tenant's name and default domain from findTenantInformationByTenantId,
  the partner directory's sink for the tenant id (else that domain, else the default sink), and the sink
  called with tenacity retries; still failing: the claim is released and the message fails, so Service Bus
  redelivers it and finally dead-letters it. Never silently dropped.

Both steps run even if the other fails; then the first failure is raised. Every outcome is audited (the
`guestwarden blocked` view reads the audit log); a step's outcome and its audit entry are one state write
(`Ledger.complete(..., audit=...)`), so a worker killed at any point never leaves a done step unaudited.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.domain.directory import DirectoryUser, OutgoingMail, TenantInformation
from shared.domain.messages import RiskIncident
from shared.domain.risk import Ticket, notice_recipients
from shared.ports.graph import GraphError, ResponseGraph
from shared.ports.state import ANY_ETAG, AuditEntry, Claim, StateStore, claim_or_wait
from shared.ports.templates import RiskRenderer
from shared.ports.tickets import PartnerSinks, TicketSink, TicketSinkError
from shared.services.audit import Auditor
from shared.services.census import count_ticket

log = logging.getLogger(__name__)

ACTOR = "risk-responder"
NOTIFY = "risk-notify"
SENDING = "risk-notice-sending"
"""Record kind: a notice handed to sendMail whose outcome was not recorded yet (key: the incident id)."""
TICKET = "risk-ticket"
LEASE_SECONDS = 300


class RetryLater(Exception):
    """Another worker holds this step right now: let the queue deliver the message again."""


class TicketNotDelivered(Exception):
    """The sink kept failing: the message fails and ends in the dead-letter queue after maxDeliveryCount."""


@dataclass(frozen=True, slots=True)
class ResponseDeps:
    graph: ResponseGraph
    state: StateStore
    templates: RiskRenderer
    sinks: PartnerSinks | None
    sender: str
    organisation: str | None
    support_contact: str | None
    notice_format: Literal["html", "text"]
    clock: Callable[[], datetime]
    ticket_attempts: int = 4
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    owner: str = field(default_factory=lambda: f"risk-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class ResponseOutcome:
    notice: str
    ticket: str


async def respond_to_incident(incident: RiskIncident, deps: ResponseDeps, correlation_id: str = "") -> ResponseOutcome:
    await deps.state.flush_outbox()  # audit entries a killed worker's completions left pending
    results: list[str] = []
    failures: list[BaseException] = []
    for step in (notify_guest, open_ticket):
        try:
            results.append(await step(incident, deps, correlation_id))
        except Exception as exc:  # the other step still runs; the first failure fails the message
            failures.append(exc)
            results.append(f"failed: {type(exc).__name__}")
    if failures:
        raise failures[0]
    return ResponseOutcome(*results)


async def _claim(action: str, incident: RiskIncident, deps: ResponseDeps) -> Claim | None:
    claim = await claim_or_wait(
        deps.state,
        action,
        incident.user_id,
        incident.incident_id,
        owner=deps.owner,
        lease_seconds=LEASE_SECONDS,
        sleep=deps.sleep,
    )
    if claim.held:
        raise RetryLater(f"{action} of incident {incident.incident_id} is in progress elsewhere")
    return claim if claim.won else None


async def _finish(
    claim: Claim, deps: ResponseDeps, incident: RiskIncident, outcome: str, reason: str, **evidence: Any
) -> str:
    entry = _entry(deps, claim.action, incident, outcome, reason, evidence)
    # One state write: the completion and its audit entry (a killed worker leaves both or neither; the
    # redelivery finds the step done only if the admin can see it). Shielded, so an invocation cancelled
    # while it waits (a host shutting down) still finishes it rather than releasing a claim being completed.
    await asyncio.shield(deps.state.complete(claim, {"status": outcome, "reason": reason, **evidence}, audit=entry))
    return outcome


async def _audit(
    deps: ResponseDeps, action: str, incident: RiskIncident, outcome: str, reason: str, evidence: Mapping[str, Any]
) -> None:
    await deps.state.append(_entry(deps, action, incident, outcome, reason, evidence))


def _entry(
    deps: ResponseDeps, action: str, incident: RiskIncident, outcome: str, reason: str, evidence: Mapping[str, Any]
) -> AuditEntry:
    return Auditor(deps.state, ACTOR, deps.clock).entry(
        action,
        incident.user_id,
        outcome=outcome,
        reason=reason,
        evidence={"incidentId": incident.incident_id, **evidence},
        correlation_id=str(incident.sign_in.get("correlationId") or ""),
    )


# --- the guest notice -----------------------------------------------------------------------------------------


async def notify_guest(incident: RiskIncident, deps: ResponseDeps, correlation_id: str = "") -> str:
    claim = await _claim(NOTIFY, incident, deps)
    if claim is None:
        return "already-done"
    if await deps.state.get(SENDING, incident.incident_id) is not None:
        # an earlier attempt died after it may have handed the mail to Graph: never risk a second mail
        return await _finish(claim, deps, incident, "uncertain", "an earlier attempt was interrupted while sending")
    try:
        user = await deps.graph.get_user(incident.user_id)
    except BaseException:
        await deps.state.release(claim)
        raise
    recipients = notice_recipients(user) if user else ()
    if user is None or not user.is_guest:
        return await _finish(claim, deps, incident, "skipped", "not a guest (or gone): never mailed")
    if not recipients:
        return await _finish(claim, deps, incident, "skipped", "the guest has no usable mail or otherMails")
    tenant = await _tenant(incident.home_tenant_id, deps)
    mail = _notice_mail(incident, user, recipients, tenant, deps)
    await deps.state.put(SENDING, incident.incident_id, {"at": deps.clock().isoformat()}, etag=ANY_ETAG)
    try:
        await deps.graph.send_mail(mail)
    except GraphError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            await deps.state.delete(SENDING, incident.incident_id)  # refused: certainly not sent
            await deps.state.release(claim)
            await _audit(deps, NOTIFY, incident, "failed", f"sendMail refused: {exc.status} {exc.code}", {})
            raise
        log.warning("notice for incident %s: sendMail outcome unknown (%s); not retried", incident.incident_id, exc)
        return await _finish(claim, deps, incident, "uncertain", f"sendMail outcome unknown: {exc.status}")
    except BaseException:
        await deps.state.release(claim)  # the marker stays: the next delivery records "uncertain", never re-sends
        raise
    outcome = await _finish(
        claim, deps, incident, "sent", "guest told how to remediate at home", recipients=len(recipients)
    )
    await deps.state.delete(SENDING, incident.incident_id)
    return outcome


def _notice_mail(
    incident: RiskIncident,
    user: DirectoryUser,
    recipients: tuple[str, ...],
    tenant: TenantInformation | None,
    deps: ResponseDeps,
) -> OutgoingMail:
    context = {
        "guest_name": user.display_name or "there",
        "organisation": deps.organisation or "the organisation that invited you",
        "home_organisation": _home_name(tenant) or "your organisation",
        "support_contact": deps.support_contact or "",
        "blocked_at": _minute(incident.started),
        "incident_id": incident.incident_id,
        "correlation_id": str(incident.sign_in.get("correlationId") or ""),
    }
    rendered = deps.templates.notice(context)
    if deps.notice_format == "text":
        return OutgoingMail(deps.sender, recipients, rendered.subject, rendered.text, body_type="Text")
    return OutgoingMail(deps.sender, recipients, rendered.subject, rendered.html, body_type="HTML")


def _minute(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _home_name(tenant: TenantInformation | None) -> str | None:
    if tenant is None:
        return None
    return tenant.display_name or tenant.federation_brand_name or tenant.default_domain_name


async def _tenant(tenant_id: str, deps: ResponseDeps) -> TenantInformation | None:
    try:
        return await deps.graph.find_tenant_information(tenant_id)
    except GraphError as exc:
        log.warning("tenant information for %s unavailable: %s", tenant_id, exc)
        return None


# --- the home-tenant ticket -----------------------------------------------------------------------------------


async def open_ticket(incident: RiskIncident, deps: ResponseDeps, correlation_id: str = "") -> str:
    claim = await _claim(TICKET, incident, deps)
    if claim is None:
        return "already-done"
    try:
        return await _open_ticket(claim, incident, deps)
    except BaseException:
        await deps.state.release(claim)
        raise


async def _open_ticket(claim: Claim, incident: RiskIncident, deps: ResponseDeps) -> str:
    if deps.sinks is None:
        log.warning("incident %s: no partner directory configured; no home-tenant ticket", incident.incident_id)
        return await _finish(claim, deps, incident, "skipped", "RISK_PARTNER_DIRECTORY is not configured")
    user = await deps.graph.get_user(incident.user_id)
    if user is None or not user.is_guest:
        return await _finish(claim, deps, incident, "skipped", "not a guest (or gone): no ticket")
    tenant = await _tenant(incident.home_tenant_id, deps)
    partner, sink = deps.sinks.resolve(incident.home_tenant_id, tenant.default_domain_name if tenant else None)
    ticket = build_ticket(incident, user, tenant, deps)
    try:
        reference = await _deliver(sink, ticket, deps)
    except TicketSinkError as exc:
        await _audit(deps, TICKET, incident, "failed", str(exc), {"sink": sink.kind, "partner": partner.name})
        raise TicketNotDelivered(f"ticket for incident {incident.incident_id} not delivered: {exc}") from exc
    status = await _finish(
        claim,
        deps,
        incident,
        "opened",
        f"ticket opened with {partner.name}",
        sink=sink.kind,
        partner=partner.name,
        ticketId=reference,
        homeOrganisation=ticket.home_organisation,
    )
    await count_ticket(deps.state, deps.clock())  # the dashboard's count (shared.services.census)
    return status


async def _deliver(sink: TicketSink, ticket: Ticket, deps: ResponseDeps) -> str:
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TicketSinkError),
        stop=stop_after_attempt(deps.ticket_attempts),
        wait=wait_exponential(multiplier=1, min=1, max=30),
        sleep=deps.sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await sink.open(ticket)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


def build_ticket(
    incident: RiskIncident, user: DirectoryUser, tenant: TenantInformation | None, deps: ResponseDeps
) -> Ticket:
    sign_in = incident.sign_in
    events = sign_in.get("riskEventTypes")
    return Ticket(
        incident_id=incident.incident_id,
        home_tenant_id=incident.home_tenant_id,
        home_organisation=_home_name(tenant) or incident.home_tenant_id,
        resource_organisation=deps.organisation or "a partner organisation",
        resource_tenant_id=None,
        guest_mail=user.mail or (user.other_mails[0] if user.other_mails else None),
        first_blocked_at=incident.started,
        error_code=int(sign_in.get("errorCode") or 0),
        failure_reason=_text(sign_in.get("failureReason")),
        risk_level=_text(sign_in.get("riskLevelDuringSignIn")),
        risk_state=_text(sign_in.get("riskState")),
        risk_event_types=tuple(str(e) for e in events) if isinstance(events, list) else (),
        correlation_id=_text(sign_in.get("correlationId")),
        sign_in_id=str(sign_in.get("id") or ""),
        contact=deps.support_contact,
    )


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
