"""Use case: the admins' daily digest of risk-blocked guests (optional: RISK_DIGEST_ENABLED).

The digest is the `guestwarden blocked` view in a mail: it folds the audit log with shared.services.risk_report,
so it says exactly what the flows recorded. It lists the incidents detected in the last 24 hours and the older
ones that are still open (a notice or a ticket pending or failed), looked up `OPEN_LOOKBACK` back.

* **Once a day.** A ledger claim on ("risk-digest", <UTC day>) makes overlapping timers, scale-out instances and
  a schedule that fires more often send at most one digest per UTC day.
* **Nothing to report, nothing sent.** The claim is released (a later run the same day may still send) and
  the log says so.
* **No secrets, little personal data.** Only what `guestwarden blocked` shows: the guest's UPN, the home
  organisation, the error code, the notice and ticket states and the ticket id. Never the audit reasons (a
  sink's error text), sink URLs or settings. Names come from outside (a tenant's display name, a partner's
  ticket id): the HTML template is autoescaped, and every field is one bounded line for the text template.
* **At most once.** sendMail is not idempotent: a 4xx (not accepted) releases the claim and fails the run; a
  timeout or 5xx leaves the outcome unknown and is recorded as "uncertain", not retried. Every send is audited.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.domain.directory import OutgoingMail
from shared.domain.risk import safe_subject
from shared.ports.graph import DigestGraph, GraphError
from shared.ports.state import AuditEntry, Claim, StateStore
from shared.ports.templates import RiskRenderer
from shared.services.audit import Auditor
from shared.services.risk_report import BlockedIncident, blocked_incidents

log = logging.getLogger(__name__)

ACTOR = "risk-digest"
DIGEST = "risk-digest"
"""Ledger and audit action of the digest."""
DIGEST_SCOPE = "admins"
WINDOW = timedelta(hours=24)
"""Incidents detected this far back are "new" in the digest."""
OPEN_LOOKBACK = timedelta(days=14)
"""How far back open incidents are looked for (the default reach of `guestwarden blocked`)."""
LEASE_SECONDS = 300

DigestStatus = Literal["sent", "uncertain", "nothing-to-report", "already-sent", "in-progress", "disabled"]


@dataclass(frozen=True, slots=True)
class DigestDeps:
    graph: DigestGraph
    state: StateStore
    templates: RiskRenderer
    enabled: bool
    sender: str | None
    recipients: tuple[str, ...]
    organisation: str | None
    body_format: Literal["html", "text"]
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"risk-digest-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class DigestRow:
    """One incident as the templates see it: display-ready, one line per field."""

    incident_id: str
    detected: str
    guest: str
    home_organisation: str
    error_code: str
    notice: str
    ticket: str
    ticket_id: str
    state: str


@dataclass(frozen=True, slots=True)
class Digest:
    day: str
    recent: tuple[DigestRow, ...]
    still_open: tuple[DigestRow, ...]

    @property
    def open_count(self) -> int:
        return sum(1 for row in (*self.recent, *self.still_open) if row.state == "open")

    @property
    def empty(self) -> bool:
        return not self.recent and not self.still_open


@dataclass(frozen=True, slots=True)
class DigestOutcome:
    status: DigestStatus
    recent: int = 0
    still_open: int = 0


async def build_digest(deps: DigestDeps) -> Digest:
    """Incidents detected in the last 24 h, and older ones still open, newest first."""
    now = deps.clock()
    incidents = await blocked_incidents(deps.state, now - OPEN_LOOKBACK)
    recent_since = now - WINDOW
    recent = [i for i in incidents if i.detected is not None and i.detected >= recent_since]
    recent_ids = {i.incident_id for i in recent}
    older_open = [i for i in incidents if i.incident_id not in recent_ids and i.state == "open"]
    return Digest(
        day=now.date().isoformat(),
        recent=tuple(_row(i) for i in recent),
        still_open=tuple(_row(i) for i in older_open),
    )


def _row(incident: BlockedIncident) -> DigestRow:
    return DigestRow(
        incident_id=_line(incident.incident_id),
        detected=f"{incident.detected:%Y-%m-%d %H:%M}" if incident.detected else "(before the digest's reach)",
        guest=_line(incident.guest),
        home_organisation=_line(incident.home_organisation or incident.home_tenant_id or "unknown"),
        error_code=str(incident.error_code or ""),
        notice=_line(incident.notice),
        ticket=_line(incident.ticket),
        ticket_id=_line(incident.ticket_id),
        state=incident.state,
    )


def _line(text: str) -> str:
    """One line, no control characters, bounded: a name from outside cannot forge lines of the text digest."""
    return safe_subject(text)


async def send_risk_digest(deps: DigestDeps) -> DigestOutcome:
    """Mail the admins today's digest, at most once per UTC day; nothing when there is nothing to report."""
    if not deps.enabled:
        log.info("risk digest: disabled (RISK_DIGEST_ENABLED=false); nothing sent")
        return DigestOutcome("disabled")
    if not deps.sender or not deps.recipients:
        raise ValueError("risk digest: MAIL_SENDER and ADMIN_ALERT_RECIPIENTS are required when it is enabled")
    day = deps.clock().date().isoformat()
    await deps.state.flush_outbox()  # audit entries a killed worker's completions left pending
    claim = await deps.state.claim(DIGEST, day, DIGEST_SCOPE, owner=deps.owner, lease_seconds=LEASE_SECONDS)
    if claim.done:
        log.info("risk digest for %s: already sent today", day)
        return DigestOutcome("already-sent")
    if claim.held:
        log.info("risk digest for %s: another run is sending it", day)
        return DigestOutcome("in-progress")
    try:
        digest = await build_digest(deps)
    except BaseException:
        await deps.state.release(claim)
        raise
    counts = {"recent": len(digest.recent), "still_open": len(digest.still_open)}
    if digest.empty:
        await deps.state.release(claim)  # a later run today may still find something to report
        log.info("risk digest for %s: nothing to report (no incident in the last 24 h, none open); not sent", day)
        return DigestOutcome("nothing-to-report")
    return await _send(claim, digest, deps, counts)


async def _send(claim: Claim, digest: Digest, deps: DigestDeps, counts: dict[str, int]) -> DigestOutcome:
    assert deps.sender is not None
    mail = _mail(digest, deps.sender, deps.recipients, deps)
    evidence = {"day": digest.day, "recipients": len(deps.recipients), **counts, "open": digest.open_count}
    try:
        await deps.graph.send_mail(mail)
    except GraphError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            await deps.state.release(claim)
            await _audit(deps, digest.day, "failed", f"sendMail refused: {exc.status} {exc.code}", evidence)
            raise
        log.warning("risk digest for %s: sendMail outcome unknown (%s); not retried today", digest.day, exc)
        entry = _entry(deps, digest.day, "uncertain", f"sendMail outcome unknown: {exc.status}", evidence)
        await deps.state.complete(claim, {"status": "uncertain", **evidence}, audit=entry)
        return DigestOutcome("uncertain", counts["recent"], counts["still_open"])
    except BaseException:
        await deps.state.release(claim)
        raise
    entry = _entry(deps, digest.day, "sent", "daily risk digest mailed to the admins", evidence)
    await deps.state.complete(claim, {"status": "sent", **evidence}, audit=entry)
    log.info("risk digest for %s: sent (%d new, %d older still open)", digest.day, *counts.values())
    return DigestOutcome("sent", counts["recent"], counts["still_open"])


def _mail(digest: Digest, sender: str, recipients: Sequence[str], deps: DigestDeps) -> OutgoingMail:
    context = {
        "organisation": deps.organisation or "your tenant",
        "day": digest.day,
        "window_hours": int(WINDOW.total_seconds() // 3600),
        "recent": digest.recent,
        "still_open": digest.still_open,
        "open_count": digest.open_count,
    }
    rendered = deps.templates.digest(context)
    if deps.body_format == "text":
        return OutgoingMail(sender, tuple(recipients), rendered.subject, rendered.text, body_type="Text")
    return OutgoingMail(sender, tuple(recipients), rendered.subject, rendered.html, body_type="HTML")


async def _audit(deps: DigestDeps, day: str, outcome: str, reason: str, evidence: dict[str, object]) -> None:
    await deps.state.append(_entry(deps, day, outcome, reason, evidence))


def _entry(deps: DigestDeps, day: str, outcome: str, reason: str, evidence: dict[str, object]) -> AuditEntry:
    """The digest's audit entry; a sent (or uncertain) digest's is written with its claim's completion."""
    return Auditor(deps.state, ACTOR, deps.clock).entry(DIGEST, day, outcome=outcome, reason=reason, evidence=evidence)
