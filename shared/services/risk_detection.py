"""Use case: find guests blocked because of risk in the sign-in logs, and enqueue one message per new incident.

signIns cannot be subscribed to, and its entries arrive minutes late, so a timer polls with an overlapping
window: every poll reads from (watermark - lookback) to now, and the domain's incident grouping makes the
re-read harmless (shared.domain.risk). Per poll:

1. read the window page by page; let the domain classify every sign-in, counting the ignored ones by reason;
2. for a risk block from another tenant, read the user once: only a userType Guest goes on (members, and
   users gone since, are counted and dropped);
3. fold the blocks into each guest's known incidents (a state record per guest); publish one message per NEW
   incident with a message id derived from the incident (a re-detection after a crash collapses in Service
   Bus duplicate detection, and the processor's ledger stops it anyway);
4. save the guests' incidents, audit each new incident, then move the watermark (etag-checked: an
   overlapping run that moved it first wins, and this run's work is re-done harmlessly by the next one).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.domain.directory import SignIn
from shared.domain.messages import RiskIncident
from shared.domain.risk import (
    Cause,
    Ignored,
    Incident,
    RiskBlock,
    classify_block,
    group_incidents,
    is_cross_tenant,
    judge_user,
    prune_incidents,
)
from shared.ports.graph import DetectionGraph
from shared.ports.publisher import MessagePublisher, OutgoingMessage
from shared.ports.state import ConflictError, Record, StateStore
from shared.services.audit import Auditor

log = logging.getLogger(__name__)

ACTOR = "risk-detector"
RISK_INCIDENT = RiskIncident.TYPE
"""The audit action of a detected incident (the same name as its queue message)."""
"""Message type on RISK_INCIDENTS_QUEUE, and the audit action of a detected incident."""
WATERMARK_KIND = "risk-detection"
WATERMARK_KEY = "signins-watermark"
GUEST_KIND = "risk-guest"
MAX_SEEN_IDS = 500


@dataclass(frozen=True, slots=True)
class DetectionDeps:
    graph: DetectionGraph
    state: StateStore
    publisher: MessagePublisher
    queue: str
    lookback: timedelta
    quiet: timedelta
    clock: Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class DetectionOutcome:
    since: datetime
    until: datetime
    sign_ins: int
    risk_blocks: int
    new_incidents: tuple[str, ...]
    already_seen: int
    ignored: Mapping[str, int]
    watermark_moved: bool


async def detect_risk_incidents(deps: DetectionDeps) -> DetectionOutcome:
    """One poll. Safe to run twice over the same window: no incident is enqueued twice."""
    now = deps.clock()
    mark = await deps.state.get(WATERMARK_KIND, WATERMARK_KEY)
    since = (datetime.fromisoformat(str(mark.value["until"])) if mark else now) - deps.lookback
    ignored: Counter[str] = Counter()
    blocks, total = await _risk_blocks(deps, since, now, ignored)
    guests = await _guest_blocks(deps, blocks, ignored)
    new, seen_again = await _record_incidents(deps, guests, since)
    moved = await _move_watermark(deps, mark, now)
    outcome = DetectionOutcome(
        since, now, total, len(guests), tuple(i.id for i in new), seen_again, dict(sorted(ignored.items())), moved
    )
    log.info(
        "risk poll %s..%s: %d sign-ins, %d guest risk blocks, %d new incident(s), ignored %s",
        since.isoformat(),
        now.isoformat(),
        total,
        len(guests),
        len(new),
        dict(ignored),
    )
    return outcome


async def _risk_blocks(
    deps: DetectionDeps, since: datetime, until: datetime, ignored: Counter[str]
) -> tuple[list[RiskBlock], int]:
    blocks: list[RiskBlock] = []
    total = 0
    async for page in deps.graph.iter_sign_in_pages(since, until):
        for sign_in in page:
            total += 1
            verdict = classify_block(sign_in)
            if isinstance(verdict, Ignored):
                ignored[verdict] += 1
            elif not is_cross_tenant(sign_in) or not sign_in.user_id:
                ignored[Ignored.SAME_TENANT] += 1
            else:
                blocks.append(RiskBlock(sign_in, verdict))
    return blocks, total


async def _guest_blocks(deps: DetectionDeps, blocks: Sequence[RiskBlock], ignored: Counter[str]) -> list[RiskBlock]:
    """Only blocks whose user object is a guest, reading each user once."""
    verdicts: dict[str, Ignored | None] = {}
    kept: list[RiskBlock] = []
    for block in blocks:
        if block.user_id not in verdicts:
            verdicts[block.user_id] = judge_user(await deps.graph.get_user(block.user_id))
        verdict = verdicts[block.user_id]
        if verdict is None:
            kept.append(block)
        else:
            ignored[verdict] += 1
    return kept


async def _record_incidents(
    deps: DetectionDeps, blocks: Sequence[RiskBlock], since: datetime
) -> tuple[list[Incident], int]:
    by_user: dict[str, list[RiskBlock]] = {}
    for block in blocks:
        by_user.setdefault(block.user_id, []).append(block)
    new: list[Incident] = []
    seen_again = 0
    for user_id, user_blocks in sorted(by_user.items()):
        record = await deps.state.get(GUEST_KIND, user_id)
        known, seen = _load_guest(record)
        grouping = group_incidents(user_blocks, {user_id: known}, deps.quiet, seen)
        seen_again += grouping.already_seen
        for incident in grouping.new:
            await deps.publisher.publish(deps.queue, incident_message(incident))
            await _audit(incident, deps)
        await _save_guest(deps, user_id, record, grouping.incidents.get(user_id, ()), user_blocks, since)
        new.extend(grouping.new)
    return new, seen_again


def incident_message(incident: Incident) -> OutgoingMessage:
    """The work item of one incident; its message id is the incident id, so re-detection collapses."""
    assert incident.first is not None, "only a freshly opened incident is published"
    first = incident.first.sign_in
    message = RiskIncident(
        incident_id=incident.id,
        user_id=incident.user_id,
        home_tenant_id=first.home_tenant_id or "",  # none: the responder dead-letters it, as it can do nothing
        started=incident.started.isoformat(),
        sign_in=sign_in_summary(first),
        cause=str(incident.first.cause),
    )
    return OutgoingMessage.of(
        message, message_id=f"risk-{incident.id}", correlation_id=first.correlation_id or first.id
    )


def sign_in_summary(sign_in: SignIn) -> dict[str, Any]:
    """What the notice and the ticket may use of the sign-in (no IP address, location or device)."""
    return {
        "id": sign_in.id,
        "created": sign_in.created.isoformat(),
        "errorCode": sign_in.error_code,
        "failureReason": sign_in.failure_reason,
        "riskLevelDuringSignIn": sign_in.risk_level_during_sign_in,
        "riskState": sign_in.risk_state,
        "riskEventTypes": list(sign_in.risk_event_types),
        "correlationId": sign_in.correlation_id,
        "appDisplayName": sign_in.app_display_name,
    }


async def _audit(incident: Incident, deps: DetectionDeps) -> None:
    assert incident.first is not None
    first = incident.first.sign_in
    await Auditor(deps.state, ACTOR, deps.clock).record(
        RISK_INCIDENT,
        incident.user_id,
        reason=_reason(incident.first.cause, first.error_code),
        outcome="detected",
        evidence={
            "incidentId": incident.id,
            "homeTenantId": first.home_tenant_id,
            "userPrincipalName": first.user_principal_name,
            "started": incident.started.isoformat(),
            "signInId": first.id,
            "errorCode": first.error_code,
        },
        correlation_id=first.correlation_id or "",
    )


def _reason(cause: Cause, code: int) -> str:
    return f"sign-in blocked ({code}): {cause}"


def _load_guest(record: Record | None) -> tuple[tuple[Incident, ...], frozenset[str]]:
    if record is None:
        return (), frozenset()
    incidents = tuple(
        Incident(
            id=str(item["id"]),
            user_id=record.key,
            started=datetime.fromisoformat(str(item["started"])),
            last_seen=datetime.fromisoformat(str(item["lastSeen"])),
            blocks=int(str(item.get("blocks", 1))),
        )
        for item in _dicts(record.value.get("incidents"))
    )
    return incidents, frozenset(_seen(record).keys())


def _seen(record: Record | None) -> dict[str, str]:
    """Sign-in id -> createdDateTime of the guest's blocks already counted."""
    seen = record.value.get("seen") if record else None
    return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


async def _save_guest(
    deps: DetectionDeps,
    user_id: str,
    record: Record | None,
    incidents: Sequence[Incident],
    blocks: Sequence[RiskBlock],
    since: datetime,
) -> None:
    """Keep what a later poll can still reach: incidents within the quiet period of its window, and the ids
    of blocks the overlap will re-read."""
    kept = prune_incidents(incidents, since - deps.quiet)
    counted = {**_seen(record), **{b.sign_in.id: b.sign_in.created.isoformat() for b in blocks}}
    recent = dict(sorted((v, k) for k, v in counted.items() if datetime.fromisoformat(v) >= since)[-MAX_SEEN_IDS:])
    value = {
        "incidents": [
            {"id": i.id, "started": i.started.isoformat(), "lastSeen": i.last_seen.isoformat(), "blocks": i.blocks}
            for i in kept
        ],
        "seen": {sign_in_id: created for created, sign_in_id in recent.items()} if kept else {},
    }
    try:
        await deps.state.put(GUEST_KIND, user_id, value, etag=record.etag if record else None)
    except ConflictError:
        log.warning("risk poll: guest %s was updated by an overlapping poll; the next poll reconciles", user_id)


async def _move_watermark(deps: DetectionDeps, mark: Record | None, until: datetime) -> bool:
    try:
        etag = mark.etag if mark else None
        await deps.state.put(WATERMARK_KIND, WATERMARK_KEY, {"until": until.isoformat()}, etag=etag)
    except ConflictError:
        log.warning("risk poll: the watermark was moved by an overlapping poll; keeping theirs")
        return False
    return True
