"""Executing a sweep: plan, check, and (only when not a dry run and every check passed) act; always report and
audit.

Acting happens in `$batch`es: every step claims ("stale-<action>", user, scope) in the idempotency ledger
first, where the scope names the lifecycle episode (see `StaleDecision.scope`), so a rerun after a crash finds
what was done (DONE: the stage record is repaired from the ledger's outcome, nothing is repeated) and does what
was not (skipping nothing). Every action is audited with its evidence (correlation id = the run id).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.domain.directory import OutgoingMail
from shared.domain.stale import Action
from shared.domain.stale_plan import PlanItem, StalePlan, memory_after
from shared.ports.graph import BATCH_LIMIT, BatchOps, BatchRequest, BatchResult, GraphError
from shared.ports.state import Claim
from shared.services.audit import Auditor
from shared.services.stale.deps import ACTOR, LEASE_SECONDS, StaleDeps, audit, write_memory
from shared.services.stale.plan import build_plan
from shared.services.stale.report import render_csv, render_html

log = logging.getLogger(__name__)

REQUESTS_PER_USER = {Action.DISABLE: 2, Action.DELETE: 1, Action.REACTIVATE: 1, Action.WARN: 1}
"""Sub-requests per user and action (a disable is PATCH + revokeSignInSessions, a warning reads the sponsors):
chunks fill a `$batch` of 20."""


async def sweep_stale_guests(deps: StaleDeps, *, dry_run: bool | None = None, run_id: str | None = None) -> StalePlan:
    """Plan, check, and (only when not a dry run and every check passed) act; always report and audit."""
    plan = await build_plan(deps, run_id, dry_run=dry_run)
    if plan.status == "planned":
        try:
            await _execute(plan, deps)
        finally:
            failed = [i for i in plan.items if i.outcome.startswith("failed") or i.outcome in ("planned", "held")]
            plan.status = "incomplete" if failed else "applied"
            if failed:
                plan.message = f"{len(failed)} action(s) not done; the next run takes them up again."
            await _finish(plan, deps)
    else:
        for item in plan.items:
            item.outcome = "would-do" if plan.status == "dry-run" else "not-done"
        await _finish(plan, deps)
    return plan


async def _finish(plan: StalePlan, deps: StaleDeps) -> None:
    try:
        plan.reports = [
            await deps.reports.write(f"stale-{plan.run_id}.csv", render_csv(plan), "text/csv"),
            await deps.reports.write(f"stale-{plan.run_id}.html", render_html(deps.templates, plan), "text/html"),
        ]
    except OSError as exc:
        log.error("stale sweep %s: the report could not be written: %s", plan.run_id, exc)
    await Auditor(deps.state, ACTOR, deps.clock).record(
        "stale-run",
        plan.run_id,
        reason=plan.message or plan.status,
        dry_run=plan.dry_run,
        outcome=plan.status,
        evidence={
            "guestsSeen": plan.guests_seen,
            "guestsWithoutSignInActivity": plan.guests_without_activity,
            "counts": dict(plan.counts),
            "reports": plan.reports,
        },
        correlation_id=plan.run_id,
    )
    log.info("stale sweep %s: %s %s", plan.run_id, plan.status, dict(plan.counts))


_ORDER = (Action.REACTIVATE, Action.DELETE, Action.DISABLE, Action.WARN)


async def _execute(plan: StalePlan, deps: StaleDeps) -> None:
    done = 0
    for action in _ORDER:
        items = [i for i in plan.items if i.action is action]
        size = BATCH_LIMIT // REQUESTS_PER_USER[action]
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            await _run_chunk(plan, chunk, action, deps)
            done += len(chunk)
            if deps.on_progress:
                deps.on_progress("acting", done)


async def _run_chunk(plan: StalePlan, chunk: list[PlanItem], action: Action, deps: StaleDeps) -> None:
    won: list[tuple[PlanItem, Claim]] = []
    for item in chunk:
        claim = await deps.state.claim(
            f"stale-{action}", item.user_id, item.scope, owner=deps.owner, lease_seconds=LEASE_SECONDS
        )
        if claim.done:
            item.outcome = "already-done"
            await write_memory(deps, item.user_id, (claim.outcome or {}).get("memory"))
        elif claim.held:
            item.outcome = "held"
        else:
            won.append((item, claim))
    if not won:
        return
    pending = {id(item): claim for item, claim in won}
    try:
        if action is Action.WARN:
            await _warn(plan, won, deps, pending)
        else:
            await _batch_action(plan, won, action, deps, pending)
    finally:
        # Anything still claimed did not finish (an exception, a crash of the batch): let the next run take it.
        for claim in pending.values():
            await deps.state.release(claim)


def _requests(item: PlanItem, action: Action) -> list[BatchRequest]:
    if action is Action.DISABLE:
        return [BatchOps.disable(item.user_id), BatchOps.revoke_sessions(item.user_id)]
    if action is Action.DELETE:
        return [BatchOps.soft_delete(item.user_id)]
    if action is Action.REACTIVATE and item.enable:
        return [BatchOps.enable(item.user_id)]
    return []


def _succeeded(result: BatchResult, action: Action) -> bool:
    # A user already gone when we delete it is what we wanted.
    return result.ok or (action is Action.DELETE and result.status == 404)


async def _batch_action(
    plan: StalePlan,
    won: list[tuple[PlanItem, Claim]],
    action: Action,
    deps: StaleDeps,
    pending: dict[int, Claim],
) -> None:
    requests = [r for item, _ in won for r in _requests(item, action)]
    results = {r.id: r for r in (await deps.graph.batch(requests) if requests else [])}
    now = deps.clock()
    for item, claim in won:
        mine = [results[r.id] for r in _requests(item, action)]
        failures = [r for r in mine if not _succeeded(r, action)]
        graph = {r.id: r.status for r in mine}
        if failures:
            error = failures[0].error
            item.outcome = f"failed: {error}" if error else "failed"
            await deps.state.release(pending.pop(id(item)))
            await audit(deps, plan, item, "failed", {"graph": graph})
            continue
        memory = memory_after(item, action, now, plan.run_id)
        await deps.state.complete(claim, {"memory": memory.to_json() if memory else None, "graph": graph})
        pending.pop(id(item))
        await write_memory(deps, item.user_id, memory.to_json() if memory else None)
        item.outcome = "done"
        await audit(deps, plan, item, "done", {"graph": graph})


async def _warn(plan: StalePlan, won: list[tuple[PlanItem, Claim]], deps: StaleDeps, pending: dict[int, Claim]) -> None:
    sponsors = await deps.graph.sponsors_of([item.user_id for item, _ in won])
    now = deps.clock()
    for item, claim in won:
        recipients = sorted({c.mail for c in sponsors.get(item.user_id, ()) if c.mail})
        try:
            mailed = await _send_warnings(item, recipients, now, plan.run_id, deps)
        except GraphError as exc:
            item.outcome = f"failed: {exc}"
            await deps.state.release(pending.pop(id(item)))
            await audit(deps, plan, item, "failed", {"sponsors": recipients})
            continue
        memory = memory_after(item, Action.WARN, now, plan.run_id)
        assert memory is not None
        await deps.state.complete(claim, {"memory": memory.to_json(), "mailed": mailed})
        pending.pop(id(item))
        await write_memory(deps, item.user_id, memory.to_json())
        item.outcome = "done"
        extra: dict[str, Any] = {"mailed": mailed, "sponsors": recipients}
        groups = sorted({c.via_group for c in sponsors.get(item.user_id, ()) if c.via_group})
        if groups:
            extra["sponsorGroups"] = groups  # sponsors by membership of these sponsor groups
        if not recipients:
            extra["note"] = "the guest has no sponsor with a mail address"
        await audit(deps, plan, item, "done", extra)


async def _send_warnings(item: PlanItem, sponsors: list[str], now: datetime, run_id: str, deps: StaleDeps) -> list[str]:
    sender = deps.config.mail_sender
    if not sender:
        log.warning("stale sweep: no MAIL_SENDER, the warning of %s is recorded but not mailed", item.user_id)
        return []
    disable_on = now + timedelta(days=deps.policy.warn_grace_days)
    delete_on = disable_on + timedelta(days=deps.policy.delete_grace_days)
    context = {
        "guest": {
            "name": item.display_name or item.user_principal_name or item.user_id,
            "address": item.mail or item.user_principal_name,
        },
        "basis": item.evidence.get("basis"),
        "inactive_since": str(item.evidence.get("inactiveSince") or "")[:10],
        "inactive_days": item.evidence.get("inactiveDays"),
        "disable_on": f"{disable_on:%Y-%m-%d}",
        "delete_on": f"{delete_on:%Y-%m-%d}",
        "run_id": run_id,
    }
    mailed: list[str] = []
    if sponsors:
        subject, body = deps.templates.mail("sponsor_warning", context)
        await deps.graph.send_mail(OutgoingMail(sender, tuple(sponsors), subject, body))
        mailed += sponsors
    if deps.config.notify_guest and item.mail:
        subject, body = deps.templates.mail("guest_warning", context)
        await deps.graph.send_mail(OutgoingMail(sender, (item.mail,), subject, body))
        mailed.append(item.mail)
    return mailed
