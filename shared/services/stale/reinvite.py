"""Re-invite before purge (issue 17, item 2): when the sweep warns about a guest that never redeemed its
invitation, Graph sends the invitation once more (shared.domain.reinvite says who and how it reads).

The warning step calls `reinvite_before_purge` for each guest whose warning it claimed (execute.py, `_warn`). The
re-invite has its own claim in the idempotency ledger, ("stale-reinvite", guest, the warning's scope): once per
lifecycle episode, whatever happens to the warning around it. Like a warning mail, an invitation mail cannot be
recalled: an intent record is written before Graph is called, and a claim taken over while it exists (the process
died while inviting), a timeout or a 5xx settle the re-invite as `uncertain`, never sent again. A refusal (4xx:
no User.Invite.All, B2B invitations off for apps) is certainly not sent: audited as failed, the claim released,
and the warning goes out all the same. Every outcome is audited (action `stale-reinvite`, correlation id = the
run id) and written into the item's evidence, so the plan, the CSV/HTML reports and the CLI show it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from shared.domain.reinvite import REINVITE_EVIDENCE, InvitationRequest, ReinviteState
from shared.domain.stale_plan import PlanItem, StalePlan
from shared.ports.graph import GraphError
from shared.ports.state import ANY_ETAG, AuditEntry, Claim
from shared.services.audit import Auditor
from shared.services.stale.deps import ACTOR, StaleDeps

log = logging.getLogger(__name__)

REINVITE_ACTION = "stale-reinvite"
"""The ledger's action and the audit entries' action."""
REINVITE_INTENT_KIND = "stale-reinvite-intent"
"""Written before Graph is asked to send the invitation, removed once the claim is settled or released: a claim
taken over while it exists means the process died while inviting, so whether the guest got it is unknown."""


async def reinvite_before_purge(plan: StalePlan, item: PlanItem, deps: StaleDeps) -> ReinviteState | None:
    """Re-send the guest's invitation if the plan says so (evidence `reinvite: planned`), at most once per
    lifecycle episode; the outcome replaces the evidence's `planned`. None: not a re-invite."""
    if item.evidence.get(REINVITE_EVIDENCE) != ReinviteState.PLANNED:
        return None
    state = await _reinvite(plan, item, deps)
    keys, values = item.evidence_items  # the same keys (shared by the run's items), one value changed
    changed = tuple(str(state) if key == REINVITE_EVIDENCE else value for key, value in zip(keys, values, strict=True))
    item.evidence_items = (keys, changed)
    return state


async def _reinvite(plan: StalePlan, item: PlanItem, deps: StaleDeps) -> ReinviteState:
    claim = await deps.state.claim(
        REINVITE_ACTION, item.user_id, item.scope, owner=deps.owner, lease_seconds=deps.config.lease_seconds
    )
    if claim.done:
        outcome = claim.outcome or {}
        if outcome.get("runId") == plan.run_id:  # this run, in an invocation cut off after settling it
            return ReinviteState(str(outcome.get("result") or ReinviteState.SENT))
        return ReinviteState.ALREADY_SENT
    if claim.held:
        return ReinviteState.HELD
    settled = False
    try:
        if claim.attempt > 1 and await deps.state.get(REINVITE_INTENT_KIND, item.user_id) is not None:
            note = "the process died while inviting: not sent again; the guest may have it"
            await _settle(deps, plan, item, claim, ReinviteState.UNCERTAIN, {"note": note})
            settled = True
            return ReinviteState.UNCERTAIN
        request = _request(item, deps)
        await deps.state.put(
            REINVITE_INTENT_KIND, item.user_id, {"scope": item.scope, "runId": plan.run_id}, etag=ANY_ETAG
        )
        evidence: dict[str, Any] = {"address": request.email, "redirectUrl": request.redirect_url}
        try:
            sent = await deps.graph.resend_invitation(request)
        except GraphError as exc:
            if exc.status is None or exc.status >= 500:  # maybe sent: never twice
                note = f"POST /invitations outcome unknown ({exc}): not sent again"
                await _settle(deps, plan, item, claim, ReinviteState.UNCERTAIN, {**evidence, "note": note})
                settled = True
                return ReinviteState.UNCERTAIN
            await deps.state.delete(REINVITE_INTENT_KIND, item.user_id)  # refused: certainly not sent
            await deps.state.append(_entry(deps, plan, item, ReinviteState.FAILED, {**evidence, "error": str(exc)}))
            log.warning("stale sweep %s: re-inviting %s was refused: %s", plan.run_id, item.user_id, exc)
            return ReinviteState.FAILED
        evidence.update(invitedUserId=sent.invited_user_id, invitationStatus=sent.status)
        state = ReinviteState.MISMATCH if sent.mismatch(request) else ReinviteState.SENT
        if state is ReinviteState.MISMATCH:
            log.warning(
                "stale sweep %s: re-inviting %s (%s) was answered for user %s",
                plan.run_id,
                item.user_id,
                request.email,
                sent.invited_user_id,
            )
        await _settle(deps, plan, item, claim, state, evidence)
        settled = True
        return state
    finally:
        if not settled:  # refused, or an exception: the next attempt may try again
            await deps.state.release(claim)


def _request(item: PlanItem, deps: StaleDeps) -> InvitationRequest:
    """The invitation for this guest: its address, the redirect, and the message naming the stage dates the
    warning starts (disable after STALE_WARN_GRACE_DAYS, delete STALE_DELETE_GRACE_DAYS later)."""
    now = deps.clock()
    disable_on = now + timedelta(days=deps.policy.warn_grace_days)
    delete_on = disable_on + timedelta(days=deps.policy.delete_grace_days)
    config = deps.config.reinvite
    return InvitationRequest(
        user_id=item.user_id,
        email=item.mail,
        redirect_url=config.redirect_url,
        message=config.message_for(f"{disable_on:%Y-%m-%d}", f"{delete_on:%Y-%m-%d}"),
    )


async def _settle(
    deps: StaleDeps, plan: StalePlan, item: PlanItem, claim: Claim, state: ReinviteState, evidence: dict[str, Any]
) -> None:
    """The ledger's completion and its audit entry in one state write, then the intent record goes."""
    outcome = {"runId": plan.run_id, "result": str(state)}
    await deps.state.complete(claim, outcome, audit=_entry(deps, plan, item, state, evidence))
    await deps.state.delete(REINVITE_INTENT_KIND, item.user_id)
    if state is ReinviteState.UNCERTAIN:
        log.warning("stale sweep %s: the re-invite of %s is uncertain (%s)", plan.run_id, item.user_id, evidence)


def _entry(
    deps: StaleDeps, plan: StalePlan, item: PlanItem, state: ReinviteState, evidence: dict[str, Any]
) -> AuditEntry:
    return Auditor(deps.state, ACTOR, deps.clock).entry(
        REINVITE_ACTION,
        item.user_id,
        reason=item.reason,
        outcome=str(state),
        evidence={**evidence, "scope": item.scope, "basis": item.evidence.get("basis")},
        correlation_id=plan.run_id,
    )
