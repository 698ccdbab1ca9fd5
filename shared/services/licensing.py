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
   `Ledger.complete(..., audit=...)`), so no crash keeps the one without the other;
7. with LICENSE_WELCOME_MAIL, a guest this processor licensed gets one welcome mail (the sign-in path that fits
   its identity, shared.domain.welcome) under a claim of its own, ("welcome", user). The licence's completion
   records that a welcome is owed, so a redelivered message finishes a welcome a killed worker left undone, and
   guests licensed before the setting was turned on (or by someone else) are never mailed. A send whose outcome
   is unknown (a timeout, a 5xx, a worker killed while sending) is recorded `uncertain` and never repeated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

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
from shared.domain.welcome import SkipWelcome, WelcomeMail, decide_welcome
from shared.ports.graph import GraphError, LicensingGraph
from shared.ports.publisher import MessagePublisher, OutgoingMessage
from shared.ports.state import ANY_ETAG, AuditEntry, Claim, StateStore, claim_or_wait
from shared.ports.templates import WelcomeRenderer
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
class WelcomeConfig:
    """The welcome mail (LICENSE_WELCOME_* settings); absent from LicensingDeps when it is off."""

    templates: WelcomeRenderer
    sender: str
    tenant_id: str
    organisation: str
    body_format: Literal["html", "text"] = "html"


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
    welcome: WelcomeConfig | None = None


@dataclass(frozen=True, slots=True)
class LicenseOutcome:
    status: str
    """licensed | already-done | skipped | rescheduled"""
    reason: str = ""
    actions: tuple[str, ...] = ()
    welcome: str = ""
    """The welcome mail: sent | uncertain | skipped | already-done | in-progress | "" (none owed)."""


class _NoSeats(Exception):
    def __init__(self, sku: SubscribedSku, detail: str) -> None:
        self.sku = sku
        super().__init__(detail)


async def claim_licence(
    state: StateStore,
    user_id: str,
    policy: LicensingPolicy,
    *,
    owner: str,
    sleep: Callable[[float], Awaitable[None]],
) -> Claim:
    """The ledger's claim on licensing `user_id` under `policy` (its SKU or group): the one record that says
    guestwarden licensed a guest (a conversion reads it to find a licence given as a guest)."""
    return await claim_or_wait(
        state, "license", user_id, policy.target, owner=owner, lease_seconds=LEASE_SECONDS, sleep=sleep
    )


async def license_guest(user_id: str, deps: LicensingDeps, correlation_id: str = "") -> LicenseOutcome:
    """License one guest if the policy says so; safe to call any number of times for the same change."""
    await deps.state.flush_outbox()  # audit entries a killed worker's completions left pending
    claim = await claim_licence(deps.state, user_id, deps.policy, owner=deps.owner, sleep=deps.sleep)
    if claim.done:
        welcome = ""
        if deps.welcome is not None and (claim.outcome or {}).get(WELCOME_OWED):
            welcome = await welcome_guest(user_id, None, deps, correlation_id)  # a killed worker's unfinished one
        return LicenseOutcome("already-done", reason="licensed earlier (idempotency ledger)", welcome=welcome)
    if claim.held:
        raise RetryLater(f"licensing of {user_id} is in progress elsewhere (lease held by {claim.holder})")
    try:
        outcome, user = await _license(user_id, claim, deps, correlation_id)
    except BaseException:
        await deps.state.release(claim)
        raise
    if deps.welcome is not None and outcome.welcome == "owed":  # the licence is completed: its own step now
        return replace(outcome, welcome=await welcome_guest(user_id, user, deps, correlation_id))
    return outcome


async def _license(
    user_id: str, claim: Claim, deps: LicensingDeps, correlation_id: str
) -> tuple[LicenseOutcome, DirectoryUser | None]:
    """License the user under `claim` (completed or released here); returns the outcome and the user as read."""
    user = await _read_user(user_id, deps)
    return await _license_user(user_id, user, claim, deps, correlation_id), user


async def _license_user(
    user_id: str, user: DirectoryUser | None, claim: Claim, deps: LicensingDeps, correlation_id: str
) -> LicenseOutcome:
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
            owed = recovered is not None and deps.welcome is not None  # the licence was ours after all
            completed: dict[str, Any] = {"status": "skipped", "reason": str(decision.reason)}
            if owed:
                completed[WELCOME_OWED] = True
            await deps.state.complete(claim, completed, audit=recovered)
            return LicenseOutcome("skipped", reason=str(decision.reason), welcome="owed" if owed else "")
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
    # welcome only guests this processor gave the licence (not one that was already in the group)
    owed = deps.welcome is not None and bool({"assign-license", "add-to-licensing-group"} & set(actions))
    completed = {"status": "licensed", "actions": actions}
    if owed:
        completed[WELCOME_OWED] = True
    await deps.state.complete(claim, completed, audit=entry)
    return LicenseOutcome("licensed", actions=tuple(actions), welcome="owed" if owed else "")


async def _read_user(user_id: str, deps: LicensingDeps) -> DirectoryUser | None:
    """Re-read the user; a guest who just accepted may not be readable for a moment (eventual consistency).
    With the welcome mail on, its identities come along (one read serves the licence and the mail)."""
    read = functools.partial(deps.graph.get_user, with_identities=deps.welcome is not None)
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda user: user is None),
        stop=stop_after_attempt(deps.read_attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry_error_callback=lambda state: None,
        sleep=deps.sleep,
    )
    user: DirectoryUser | None = await retrying(read, user_id)
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


# --- the welcome mail ------------------------------------------------------------------------------------------

WELCOME = "welcome"
"""The ledger action (and audit action) of the welcome mail: at most one per guest."""
WELCOME_SCOPE = "mail"
WELCOME_OWED = "welcomeOwed"
"""Set in the licence claim's outcome when this processor licensed the guest with the welcome mail on."""
WELCOME_SENDING = "license-welcome-sending"
"""Written before the welcome is handed to Graph and removed once it is settled: found by a later attempt, it
means an earlier one died while sending, so whether the guest got the mail is unknown."""


async def welcome_guest(user_id: str, user: DirectoryUser | None, deps: LicensingDeps, correlation_id: str) -> str:
    """Mail the guest how to sign in, at most once ever; `user` as licensing read it (None: read it here).

    Returns sent | uncertain | skipped | already-done | in-progress. A refusal (4xx: certainly not sent) is
    audited and raised, so the queue delivers the message again and the welcome is tried again, up to the
    queue's delivery count; an unknown outcome (timeout, 5xx) is recorded `uncertain`, never sent twice."""
    config = deps.welcome
    assert config is not None, "the welcome mail is off"
    claim = await claim_or_wait(
        deps.state, WELCOME, user_id, WELCOME_SCOPE, owner=deps.owner, lease_seconds=LEASE_SECONDS, sleep=deps.sleep
    )
    if claim.done:
        return "already-done"
    if claim.held:
        return "in-progress"  # another worker is mailing it: its claim settles it
    if await deps.state.get(WELCOME_SENDING, user_id) is not None:
        return await _settle_welcome(
            claim, deps, user_id, "uncertain", "an earlier attempt died while sending: not sent again", correlation_id
        )
    try:
        if user is None or not user.identities:
            user = await _read_user(user_id, deps)
        decision = decide_welcome(user, config.tenant_id)
        if isinstance(decision, SkipWelcome):
            if not decision.final:
                await deps.state.release(claim)
                return "skipped"
            return await _settle_welcome(claim, deps, user_id, "skipped", str(decision.reason), correlation_id)
        assert user is not None
        mail = _welcome_mail(user, decision, config)
        await deps.state.put(WELCOME_SENDING, user_id, {"at": deps.clock().isoformat()}, etag=ANY_ETAG)
    except BaseException:
        await deps.state.release(claim)
        raise
    evidence = {"path": str(decision.path), "format": config.body_format, "tenantLink": decision.my_apps_url}
    try:
        await deps.graph.send_mail(mail)
    except GraphError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            await deps.state.delete(WELCOME_SENDING, user_id)  # refused: certainly not sent
            await deps.state.release(claim)
            await _audit(
                deps,
                WELCOME,
                user_id,
                f"sendMail refused: {exc.status} {exc.code}",
                evidence,
                correlation_id,
                outcome="failed",
            )
            raise
        log.warning("welcome mail of %s: sendMail outcome unknown (%s); not sent again", user_id, exc)
        reason = f"sendMail outcome unknown ({exc.status}): not sent again; check the sender's sent items"
        return await _settle_welcome(claim, deps, user_id, "uncertain", reason, correlation_id, evidence)
    except BaseException:
        await deps.state.release(claim)  # the marker stays: the next attempt records "uncertain", never re-sends
        raise
    return await _settle_welcome(
        claim, deps, user_id, "sent", "licensed: told how to sign in", correlation_id, evidence
    )


async def _settle_welcome(
    claim: Claim,
    deps: LicensingDeps,
    user_id: str,
    status: str,
    reason: str,
    correlation_id: str,
    evidence: dict[str, Any] | None = None,
) -> str:
    """Complete the welcome claim with its audit entry in one state write (shielded: a cancelled invocation still
    finishes it), then drop the sending marker, which a completed claim never consults again."""
    entry = _entry(deps, WELCOME, user_id, reason, evidence or {}, correlation_id, outcome=status)
    await asyncio.shield(deps.state.complete(claim, {"status": status, "reason": reason}, audit=entry))
    await deps.state.delete(WELCOME_SENDING, user_id)
    return status


def _welcome_mail(user: DirectoryUser, decision: WelcomeMail, config: WelcomeConfig) -> OutgoingMail:
    context = {
        "guest_name": user.display_name or "there",
        "organisation": config.organisation,
        "path": str(decision.path),
        "my_apps_url": decision.my_apps_url,
        "host_domain": decision.host_domain,
        "sign_in_name": decision.sign_in_name,
        "home_domain": decision.home_domain,
    }
    rendered = config.templates.welcome(context)
    if config.body_format == "text":
        return OutgoingMail(config.sender, (decision.recipient,), rendered.subject, rendered.text, body_type="Text")
    return OutgoingMail(config.sender, (decision.recipient,), rendered.subject, rendered.html, body_type="HTML")
