"""Use case: license a guest who accepted their invitation, exactly once.

Triggered by a queued user change (a Graph notification or the delta backstop). The steps:

1. claim ("license", user, target) in the idempotency ledger: a duplicate message finds it DONE and stops;
   a concurrent worker finds it HELD and the message is retried later;
2. re-read the user (a notification never says what changed), retrying briefly while a just-accepted guest is
   not readable yet;
3. let the domain decide (shared.domain.licensing): skip with a reason, assign the SKU, or add to the group;
4. set the usage location first if needed (never overwriting one), check free seats, assign; a licence refused
   right after setting the usage location (replication lag) is retried with backoff;
5. no free seat: one alert mail per SKU per day, the message rescheduled, the claim released: nothing lost;
6. every action goes to the audit log; the claim is completed with the outcome, and the entry of the action the
   claim stands for (the licence, the group membership) is written with that completion (one state write:
   `Ledger.complete(..., audit=...)`), so no crash keeps the one without the other.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, retry_if_result, stop_after_attempt, wait_exponential

from shared.domain.directory import DirectoryUser, OutgoingMail, SubscribedSku
from shared.domain.licensing import (
    AddToGroup,
    AssignSku,
    LicensingPolicy,
    Skip,
    SkipReason,
    decide_licensing,
    find_sku,
)
from shared.domain.messages import UserChanged
from shared.ports.graph import GraphError, LicensingGraph
from shared.ports.publisher import MessagePublisher, OutgoingMessage
from shared.ports.state import AuditEntry, Claim, StateStore, claim_or_wait
from shared.services.audit import Auditor

log = logging.getLogger(__name__)

ACTOR = "license-processor"
LEASE_SECONDS = 300


class RetryLater(Exception):
    """Another worker holds this guest's licensing right now: let the queue deliver the message again."""


@dataclass(frozen=True, slots=True)
class Alerting:
    sender: str | None
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LicensingDeps:
    graph: LicensingGraph
    state: StateStore
    publisher: MessagePublisher
    queue: str
    policy: LicensingPolicy
    alerting: Alerting
    clock: Callable[[], datetime]
    no_seat_retry: timedelta = timedelta(minutes=60)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Injected in tests so tenacity's backoff does not sleep for real."""
    read_attempts: int = 5
    owner: str = field(default_factory=lambda: f"license-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class LicenseOutcome:
    status: str
    """licensed | already-done | skipped | rescheduled"""
    reason: str = ""
    actions: tuple[str, ...] = ()


class _NoSeats(Exception):
    def __init__(self, sku: SubscribedSku, detail: str) -> None:
        self.sku = sku
        super().__init__(detail)


async def license_guest(user_id: str, deps: LicensingDeps, correlation_id: str = "") -> LicenseOutcome:
    """License one guest if the policy says so; safe to call any number of times for the same change."""
    await deps.state.flush_outbox()  # audit entries a killed worker's completions left pending
    claim = await claim_or_wait(
        deps.state,
        "license",
        user_id,
        deps.policy.target,
        owner=deps.owner,
        lease_seconds=LEASE_SECONDS,
        sleep=deps.sleep,
    )
    if claim.done:
        return LicenseOutcome("already-done", reason="licensed earlier (idempotency ledger)")
    if claim.held:
        raise RetryLater(f"licensing of {user_id} is in progress elsewhere (lease held by {claim.holder})")
    try:
        outcome = await _license(user_id, claim, deps, correlation_id)
    except BaseException:
        await deps.state.release(claim)
        raise
    return outcome


async def _license(user_id: str, claim: Claim, deps: LicensingDeps, correlation_id: str) -> LicenseOutcome:
    user = await _read_user(user_id, deps)
    sku = None
    if deps.policy.mode == "sku":
        assert deps.policy.sku_part_number
        sku = find_sku(await deps.graph.list_subscribed_skus(), deps.policy.sku_part_number)
    decision = decide_licensing(user, deps.policy, sku)

    if isinstance(decision, Skip):
        log.info("licensing %s: nothing to do (%s)", user_id, decision.reason)
        if decision.final:
            recovered = None
            if decision.reason == SkipReason.ALREADY_LICENSED and claim.attempt > 1:
                recovered = await _interrupted_assignment(user_id, sku, deps, correlation_id)
            await deps.state.complete(claim, {"status": "skipped", "reason": str(decision.reason)}, audit=recovered)
        else:
            await deps.state.release(claim)
        return LicenseOutcome("skipped", reason=str(decision.reason))

    assert user is not None
    actions: list[str] = []
    if isinstance(decision, AddToGroup):
        added = await deps.graph.add_group_member(decision.group_id, user_id)
        action = "add-to-licensing-group" if added else "already-in-licensing-group"
        entry = _entry(deps, action, user_id, "invitation accepted", {"groupId": decision.group_id}, correlation_id)
        actions.append(action)
    else:
        assert sku is not None
        try:
            entry = await _assign_sku(user, sku, decision, deps, correlation_id, actions)
        except _NoSeats as exc:
            await deps.state.release(claim)
            await _no_seats(user_id, exc, deps, correlation_id)
            return LicenseOutcome("rescheduled", reason=str(exc))
    await deps.state.complete(claim, {"status": "licensed", "actions": actions}, audit=entry)
    return LicenseOutcome("licensed", actions=tuple(actions))


async def _read_user(user_id: str, deps: LicensingDeps) -> DirectoryUser | None:
    """Re-read the user; a guest who just accepted may not be readable for a moment (eventual consistency)."""
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda user: user is None),
        stop=stop_after_attempt(deps.read_attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry_error_callback=lambda state: None,
        sleep=deps.sleep,
    )
    user: DirectoryUser | None = await retrying(deps.graph.get_user, user_id)
    return user


def _usage_location_lag(exc: BaseException) -> bool:
    return isinstance(exc, GraphError) and exc.status == 400 and "usage location" in exc.message.lower()


def _no_seat_error(exc: GraphError) -> bool:
    return exc.status == 400 and "available licenses" in exc.message


async def _assign_sku(
    user: DirectoryUser,
    sku: SubscribedSku,
    decision: AssignSku,
    deps: LicensingDeps,
    correlation_id: str,
    actions: list[str],
) -> AuditEntry:
    """Assign the SKU (setting the usage location first, audited at once); returns the assignment's audit entry,
    which the claim's completion writes. `actions` gets what was done."""
    if decision.set_usage_location:
        await deps.graph.set_usage_location(user.id, decision.set_usage_location)
        await _audit(
            deps,
            "set-usage-location",
            user.id,
            "a direct licence needs a usage location",
            {"usageLocation": decision.set_usage_location, "homeDomain": user.home_domain},
            correlation_id,
        )
        actions.append("set-usage-location")
    if sku.free_units <= 0:
        raise _NoSeats(sku, f"no free seat of {sku.sku_part_number} ({sku.consumed_units}/{sku.enabled_units} used)")
    retrying = AsyncRetrying(
        retry=retry_if_exception(_usage_location_lag),
        stop=stop_after_attempt(5 if decision.set_usage_location else 1),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
        sleep=deps.sleep,
    )
    try:
        await retrying(deps.graph.assign_license, user.id, sku.sku_id, decision.disabled_plans)
    except GraphError as exc:
        if _no_seat_error(exc):
            raise _NoSeats(sku, f"no free seat of {sku.sku_part_number}: {exc.message}") from exc
        raise
    actions.append("assign-license")
    return _entry(
        deps,
        "assign-license",
        user.id,
        "invitation accepted",
        {"skuId": sku.sku_id, "skuPartNumber": sku.sku_part_number, "disabledPlans": list(decision.disabled_plans)},
        correlation_id,
    )


async def _interrupted_assignment(
    user_id: str, sku: SubscribedSku | None, deps: LicensingDeps, correlation_id: str
) -> AuditEntry | None:
    """An earlier attempt of ours was interrupted (a killed worker) after Graph took the licence and before the
    claim's completion (which carries the audit entry) was written: the entry that records the assignment now,
    once, so the audit log shows every licence we gave; None when one is there (an older worker's)."""
    since = deps.clock() - timedelta(days=1)
    if [e async for e in deps.state.query(since, action="assign-license", subject=user_id)]:
        return None
    evidence = {"skuId": sku.sku_id, "skuPartNumber": sku.sku_part_number} if sku else {}
    reason = "found licensed after an interrupted attempt (its audit entry was not written)"
    return _entry(deps, "assign-license", user_id, reason, evidence, correlation_id, outcome="recovered")


async def _no_seats(user_id: str, exc: _NoSeats, deps: LicensingDeps, correlation_id: str) -> None:
    now = deps.clock()
    retry_at = now + deps.no_seat_retry
    slot = retry_at.strftime("%Y%m%dT%H%M")
    await deps.publisher.publish(
        deps.queue,
        OutgoingMessage.of(
            UserChanged(user_id, "no-seat-retry"),
            message_id=f"{user_id}:no-seat:{slot}",
            correlation_id=correlation_id or None,
            scheduled_enqueue_time=retry_at,
        ),
    )
    await _audit(
        deps,
        "license-deferred",
        user_id,
        str(exc),
        {"skuId": exc.sku.sku_id, "retryAt": retry_at.isoformat()},
        correlation_id,
        outcome="rescheduled",
    )
    await _alert_no_seats(exc.sku, now, deps)


async def _alert_no_seats(sku: SubscribedSku, now: datetime, deps: LicensingDeps) -> None:
    """One mail per SKU per day to the admins, however many guests wait."""
    if not deps.alerting.sender or not deps.alerting.recipients:
        log.warning("no free seat of %s and no alert recipients configured", sku.sku_part_number)
        return
    day = now.date().isoformat()
    claim = await deps.state.claim("alert-no-seats", sku.sku_id, day, owner=deps.owner, lease_seconds=LEASE_SECONDS)
    if not claim.won:
        return
    every = int(deps.no_seat_retry.total_seconds() // 60)
    mail = OutgoingMail(
        sender=deps.alerting.sender,
        to=deps.alerting.recipients,
        subject=f"guestwarden: no free {sku.sku_part_number} licences for new guests",
        body=(
            f"Guests who accepted their invitation are waiting for a {sku.sku_part_number} licence, but all "
            f"{sku.enabled_units} seats are in use. guestwarden retries every {every} "
            "minutes; buy seats or free some, and the waiting guests will be licensed automatically.\n\n"
            "You get this mail at most once a day per SKU."
        ),
        body_type="Text",
    )
    try:
        await deps.graph.send_mail(mail)
    except GraphError:
        await deps.state.release(claim)
        raise
    entry = _entry(deps, "alert-no-seats", sku.sku_id, "no free seat", {"day": day}, "")
    await deps.state.complete(claim, {"sent": True, "recipients": list(deps.alerting.recipients)}, audit=entry)


async def _audit(
    deps: LicensingDeps,
    action: str,
    subject: str,
    reason: str,
    evidence: dict[str, Any],
    correlation_id: str,
    *,
    outcome: str = "done",
) -> None:
    await deps.state.append(_entry(deps, action, subject, reason, evidence, correlation_id, outcome=outcome))


def _entry(
    deps: LicensingDeps,
    action: str,
    subject: str,
    reason: str,
    evidence: dict[str, Any],
    correlation_id: str,
    *,
    outcome: str = "done",
) -> AuditEntry:
    return Auditor(deps.state, ACTOR, deps.clock).entry(
        action, subject, outcome=outcome, reason=reason, evidence=evidence, correlation_id=correlation_id
    )
