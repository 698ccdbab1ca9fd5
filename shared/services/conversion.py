"""Use case: review a changed user for a guest's conversion to Member and for a drift of its sign-in identity.

Runs for every queued user change (a Graph notification, the delta backstop), after licensing (dispatch.py).
It re-reads the user with its `identities` and lets shared.domain.conversion decide against our record of the
guest (state kind `guest-watch`, one per user we knew as a guest):

- **A guest became a Member** (claimed once per stint as a guest: ("conversion", user, scope)):
  1. its guest-only state is closed: the stale-stage record is deleted (so the sweep forgets the episode and a
     sponsor's attestation link for it answers "no longer in the review"), and the ledger claims of the steps
     the sweep could still take in the episode (the disable of a warned guest, the delete of a disabled one, a
     reactivation) are completed as `closed-by-conversion`, so a run that planned one before the conversion
     finds it done and does nothing;
  2. the licence guestwarden gave it as a guest (the licensing ledger's ("license", user, target) claim done
     with status `licensed`) is taken back when CONVERSION_REMOVE_GUEST_LICENSE is on: the SKU with
     `assignLicense` removeLicenses, or the licensing-group membership with `DELETE .../members/{id}/$ref`
     (one `$batch`); with it off the audit says the licence was kept;
  3. one audit entry `conversion` carries all of it, written with the claim's completion (one state write).
  A Member we never knew as a guest is left alone.
- **A redeemed guest's sign-in identity changed** (claimed once per change: ("identity-drift", user, scope)):
  one audit entry `identity-drift` (outcome `flagged`) and one mail to ADMIN_ALERT_RECIPIENTS from MAIL_SENDER,
  then the new identities become the baseline. Nothing is done to the guest. sendMail is not idempotent: a send
  whose outcome is unknown (timeout, 5xx, a worker killed while sending) is recorded `uncertain`, never repeated;
  a refusal (4xx) is audited `failed` and raised, so the queue delivers the message again.

Recording a first sight, a redemption or a redemption reset writes only the record: no audit entry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.conversion import (
    Converted,
    Drifted,
    GuestWatch,
    Remember,
    Untracked,
    describe,
    identity_json,
    review,
)
from shared.domain.directory import DirectoryUser, OutgoingMail
from shared.domain.licensing import LicensingPolicy, NoSuchSku, find_sku
from shared.domain.stale import Reclaim, Stage, StageMemory
from shared.ports.graph import ConversionGraph, GraphError
from shared.ports.state import ANY_ETAG, AuditEntry, Claim, StateStore, claim_or_wait
from shared.services.audit import Auditor
from shared.services.census import write_stage
from shared.services.licensing import Alerting, RetryLater, claim_licence
from shared.services.stale.deps import RECORD_KIND as STAGE_KIND
from shared.services.stale.reclaim import reclaim_requests, reclaimed_from

log = logging.getLogger(__name__)

ACTOR = "conversion-watch"
WATCH_KIND = "guest-watch"
"""State records: what we remember of each guest (shared.domain.conversion.GuestWatch)."""
CONVERSION = "conversion"
DRIFT = "identity-drift"
DRIFT_SENDING = "identity-drift-sending"
"""Written before the admins' mail is handed to Graph, removed once the flag is settled: found by a later
attempt, it means an earlier one died while sending (whether the admins got it is unknown)."""
CLOSED_BY_CONVERSION = "closed-by-conversion"
LEASE_SECONDS = 300


@dataclass(frozen=True, slots=True)
class ConversionDeps:
    graph: ConversionGraph
    state: StateStore
    policy: LicensingPolicy
    """The licensing policy: which ledger claim and SKU/group a licence given as a guest is."""
    alerting: Alerting
    clock: Callable[[], datetime]
    remove_guest_license: bool = False
    """CONVERSION_REMOVE_GUEST_LICENSE."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    owner: str = field(default_factory=lambda: f"conversion-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    status: str
    """untracked | unchanged | remembered | converted | flagged | already-done"""
    detail: str = ""

    @property
    def notable(self) -> bool:
        return self.status in ("converted", "flagged", "already-done")


async def review_user_change(user_id: str, deps: ConversionDeps, correlation_id: str = "") -> ReviewOutcome:
    """Review one changed user; safe to call any number of times for the same change."""
    user = await deps.graph.get_user(user_id, with_identities=True)
    record = await deps.state.get(WATCH_KIND, user_id)
    watch = GuestWatch.from_json(record.value) if record else None
    given: dict[str, Any] | None = None
    guest_state = False
    if user is not None and not user.is_guest and watch is None:
        stage = await deps.state.get(STAGE_KIND, user_id)
        given = await _licence_given(user_id, deps)
        guest_state = stage is not None or given is not None
    decision = review(user, watch, deps.clock(), guest_state=guest_state)
    match decision:
        case Untracked():
            return ReviewOutcome("untracked", decision.reason)
        case Remember():
            await _remember(deps, user_id, decision.watch)
            return ReviewOutcome("remembered", decision.reason)
        case Converted():
            assert user is not None
            if given is None:
                given = await _licence_given(user_id, deps)
            return await _convert(user, decision, given, deps, correlation_id)
        case Drifted():
            assert user is not None
            return await _flag_drift(user, decision, deps, correlation_id)
    return ReviewOutcome("unchanged")


async def _remember(deps: ConversionDeps, user_id: str, watch: GuestWatch) -> None:
    await deps.state.put(WATCH_KIND, user_id, watch.to_json(), etag=ANY_ETAG)


async def _claim(deps: ConversionDeps, action: str, user_id: str, scope: str) -> Claim:
    claim = await claim_or_wait(
        deps.state, action, user_id, scope, owner=deps.owner, lease_seconds=LEASE_SECONDS, sleep=deps.sleep
    )
    if claim.held:
        raise RetryLater(f"{action} of {user_id} is in progress elsewhere (lease held by {claim.holder})")
    return claim


def _entry_for(
    deps: ConversionDeps, action: str, user_id: str, outcome: str, reason: str, evidence: dict[str, Any], cid: str
) -> AuditEntry:
    return Auditor(deps.state, ACTOR, deps.clock).entry(
        action, user_id, outcome=outcome, reason=reason, evidence=evidence, correlation_id=cid
    )


# --- conversion -------------------------------------------------------------------------------------------------


async def _licence_given(user_id: str, deps: ConversionDeps) -> dict[str, Any] | None:
    """The outcome of the licensing claim when guestwarden licensed this user (as a guest: it licenses no one
    else), None otherwise. The ledger has no read-only look: a claim we win is released at once, untouched."""
    claim = await claim_licence(deps.state, user_id, deps.policy, owner=deps.owner, sleep=deps.sleep)
    if claim.held:
        raise RetryLater(f"licensing of {user_id} is in progress elsewhere")
    if claim.won:
        await deps.state.release(claim)
        return None
    outcome: dict[str, Any] = dict(claim.outcome or {})
    actions = outcome.get("actions")
    ours = (
        {"assign-license", "add-to-licensing-group"} & {str(a) for a in (actions or ())}
        if isinstance(actions, list)
        else set()
    )
    return outcome if outcome.get("status") == "licensed" and ours else None


async def _convert(
    user: DirectoryUser, decision: Converted, given: dict[str, Any] | None, deps: ConversionDeps, cid: str
) -> ReviewOutcome:
    claim = await _claim(deps, CONVERSION, user.id, decision.scope)
    if claim.done:
        await _remember(deps, user.id, decision.watch)  # a worker that completed the claim and died before this
        return ReviewOutcome("already-done", "conversion recorded earlier")
    try:
        stage = await _close_stale(user.id, deps)
        licence = await _take_guest_licence(user, given, deps)
    except BaseException:
        await deps.state.release(claim)
        raise
    evidence: dict[str, Any] = {
        "from": "Guest",
        "to": user.user_type,
        "guestSince": decision.previous.since.isoformat() if decision.previous else None,
        "externalUserState": user.external_user_state,
        "creationType": user.creation_type,
        "accountEnabled": user.account_enabled,
        "identities": [identity_json(i) for i in user.identities],
        "staleStage": stage,
        "guestLicence": licence,
    }
    if stage and stage.get("weDisabled") and user.account_enabled is False:
        evidence["note"] = "the stale sweep had disabled this account: it stays disabled until an admin enables it"
    reason = "userType changed from Guest to Member"
    entry = _entry_for(deps, CONVERSION, user.id, "done", reason, evidence, cid)
    await deps.state.complete(claim, {"status": "converted", "scope": decision.scope}, audit=entry)
    await _remember(deps, user.id, decision.watch)
    log.info("user %s: converted from guest to member (%s)", user.id, decision.scope)
    return ReviewOutcome("converted", reason)


def _next_steps(memory: StageMemory) -> list[tuple[str, str]]:
    """The sweep's claims for the steps it could still take in this episode (shared.domain.stale names their
    scopes: `_next_stage` for disable/delete, `_reactivate` for a reactivation). A reactivation is closed too: it
    would enable the account and give back licences the sweep took, which is an admin's decision for a member."""
    episode = f"{memory.stage}:{memory.since.isoformat()}"
    if memory.stage is Stage.WARNED:
        return [("stale-disable", episode), ("stale-reactivate", episode)]
    if memory.stage is Stage.DISABLED:
        return [("stale-delete", episode), ("stale-reactivate", episode)]
    if memory.stage is Stage.DELETED:
        return [("stale-reactivate", episode)]
    return []


async def _close_stale(user_id: str, deps: ConversionDeps) -> dict[str, Any] | None:
    """Close the guest's stale-sweep episode: its pending next step and its stage record. What was closed, as
    evidence (None: there was no episode)."""
    record = await deps.state.get(STAGE_KIND, user_id)
    if record is None:
        return None
    memory = StageMemory.from_json(record.value)
    closed: list[str] = []
    for action, scope in _next_steps(memory):
        claim = await _claim(deps, action, user_id, scope)
        if claim.won:
            outcome = {"memory": None, "runId": "", "result": CLOSED_BY_CONVERSION}
            await deps.state.complete(claim, outcome)
            closed.append(f"{action} {scope}")
    await write_stage(deps.state, user_id, None)
    return {**memory.to_json(), "closedSteps": closed}


async def _take_guest_licence(
    user: DirectoryUser, given: dict[str, Any] | None, deps: ConversionDeps
) -> dict[str, Any]:
    """Take back the licence guestwarden gave the guest (CONVERSION_REMOVE_GUEST_LICENSE); what happened, as
    evidence."""
    policy = deps.policy
    if given is None:
        return {"given": False}
    evidence: dict[str, Any] = {"given": True, "target": policy.target, "removed": False}
    if not deps.remove_guest_license:
        evidence["note"] = "kept (CONVERSION_REMOVE_GUEST_LICENSE is off)"
        return evidence
    if policy.mode == "sku":
        assert policy.sku_part_number
        try:
            sku = find_sku(await deps.graph.list_subscribed_skus(), policy.sku_part_number)
        except NoSuchSku as exc:
            evidence["note"] = str(exc)
            return evidence
        if user.direct_sku_ids is not None and sku.sku_id not in user.direct_sku_ids:
            evidence["note"] = "the member no longer holds it directly"
            return evidence
        reclaim = Reclaim(sku_ids=(sku.sku_id,))
    else:
        assert policy.group_id
        reclaim = Reclaim(group_ids=(policy.group_id,))
    requests = reclaim_requests(user.id, reclaim)
    results = {r.id: r for r in await deps.graph.batch(requests)}
    for result in results.values():
        if result.status == 429 or result.status >= 500:
            error = result.error
            assert error is not None
            raise error  # transient: the message is delivered again and the conversion retried
    taken, failed = reclaimed_from(user.id, reclaim, results)
    evidence.update(removed=bool(taken), taken=taken.to_json())
    if failed:
        evidence["failed"] = failed
    return evidence


# --- identity drift ---------------------------------------------------------------------------------------------


async def _flag_drift(user: DirectoryUser, decision: Drifted, deps: ConversionDeps, cid: str) -> ReviewOutcome:
    claim = await _claim(deps, DRIFT, user.id, decision.scope)
    if claim.done:
        await _remember(deps, user.id, decision.watch)
        return ReviewOutcome("already-done", "identity drift flagged earlier")
    drift = decision.drift
    evidence: dict[str, Any] = {
        "kind": str(drift.kind),
        "before": [identity_json(i) for i in drift.before],
        "after": [identity_json(i) for i in drift.after],
        "baselineAt": decision.previous.baseline_at.isoformat() if decision.previous.baseline_at else None,
        "redemptionResetSeen": decision.previous.reset_seen.isoformat() if decision.previous.reset_seen else None,
        "externalUserState": user.external_user_state,
        "externalUserStateChanged": user.external_user_state_changed.isoformat()
        if user.external_user_state_changed
        else None,
    }
    reason = f"sign-in identity changed after redemption ({drift.kind}): {describe(drift.before)} -> " + describe(
        drift.after
    )
    try:
        if claim.attempt > 1 and await deps.state.get(DRIFT_SENDING, user.id) is not None:
            evidence["mail"] = "uncertain: an earlier attempt died while sending; not sent again"
            return await _settle_drift(claim, decision, deps, reason, evidence, cid)
        mail = _drift_mail(user, decision, deps.alerting)
        if mail is None:
            log.warning("identity drift of %s and no alert recipients configured: audited only", user.id)
            evidence["mail"] = "not sent: MAIL_SENDER or ADMIN_ALERT_RECIPIENTS is not set"
            return await _settle_drift(claim, decision, deps, reason, evidence, cid)
        await deps.state.put(DRIFT_SENDING, user.id, {"at": deps.clock().isoformat()}, etag=ANY_ETAG)
    except BaseException:
        await deps.state.release(claim)
        raise
    try:
        await deps.graph.send_mail(mail)
    except GraphError as exc:
        if exc.status is not None and 400 <= exc.status < 500:
            await deps.state.delete(DRIFT_SENDING, user.id)  # refused: certainly not sent
            await deps.state.release(claim)
            evidence["mail"] = f"refused: {exc.status} {exc.code}"
            await deps.state.append(_entry_for(deps, DRIFT, user.id, "failed", reason, evidence, cid))
            raise
        evidence["mail"] = f"uncertain: sendMail outcome unknown ({exc.status}); not sent again"
        return await _settle_drift(claim, decision, deps, reason, evidence, cid)
    except BaseException:
        await deps.state.release(claim)  # the marker stays: the next attempt records "uncertain"
        raise
    evidence["mail"] = "sent"
    evidence["recipients"] = list(mail.to)
    return await _settle_drift(claim, decision, deps, reason, evidence, cid)


async def _settle_drift(
    claim: Claim, decision: Drifted, deps: ConversionDeps, reason: str, evidence: dict[str, Any], cid: str
) -> ReviewOutcome:
    user_id = claim.subject
    entry = _entry_for(deps, DRIFT, user_id, "flagged", reason, evidence, cid)
    outcome = {"status": "flagged", "mail": str(evidence.get("mail", ""))}
    await asyncio.shield(deps.state.complete(claim, outcome, audit=entry))
    await deps.state.delete(DRIFT_SENDING, user_id)
    await _remember(deps, user_id, decision.watch)
    log.warning("user %s: %s (%s)", user_id, reason, evidence.get("mail"))
    return ReviewOutcome("flagged", reason)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _drift_mail(user: DirectoryUser, decision: Drifted, alerting: Alerting) -> OutgoingMail | None:
    if not alerting.sender or not alerting.recipients:
        return None
    drift = decision.drift
    name = _one_line(user.display_name or user.user_principal_name or user.id)
    reset = decision.previous.reset_seen
    changed = user.external_user_state_changed
    state = f"{user.external_user_state or 'unknown'}" + (f" (since {changed:%Y-%m-%d %H:%M} UTC)" if changed else "")
    lines = [
        f"The sign-in identity of the guest {name} ({user.mail or user.user_principal_name or ''}, object id "
        f"{user.id}) changed after it had redeemed its invitation.",
        "",
        f"  before: {describe(drift.before)}",
        f"  now:    {describe(drift.after)}",
        f"  change: {drift.kind}",
        f"  invitation state: {state}",
    ]
    if reset is not None:
        lines.append(f"  the guest's redemption was reset (seen pending again on {reset:%Y-%m-%d %H:%M} UTC)")
    lines += [
        "",
        "Someone other than the person you invited may now sign in as this guest: an invitation redeemed by "
        "the wrong person, or a redemption reset followed by a redemption with another account. It may also be "
        "legitimate (an admin reset the redemption so the guest could use a new account).",
        "",
        "guestwarden changed nothing. Check the guest's sign-in logs and the directory audit log (who reset "
        "or redeemed the invitation), confirm with the guest's sponsor, and if it was not expected, block the "
        "guest's sign-in and reset its redemption status.",
        "",
        "You get this mail once per change of this guest's identity.",
    ]
    return OutgoingMail(
        sender=alerting.sender,
        to=alerting.recipients,
        subject=f"guestwarden: the sign-in identity of guest {name} changed",
        body="\n".join(lines),
        body_type="Text",
    )
