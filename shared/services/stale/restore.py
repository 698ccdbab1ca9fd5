"""Undoing the sweep: restore from deletedItems within 30 days, re-enable what we disabled; the guest's
inactivity clock then restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.domain.stale import RESTORE_WINDOW, Stage, StageMemory
from shared.ports.graph import BatchOps, GraphError
from shared.services.audit import Auditor
from shared.services.census import write_stage
from shared.services.stale.deps import ACTOR, LEASE_SECONDS, RECORD_KIND, StaleDeps
from shared.services.stale.reclaim import give_back


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    user_id: str
    status: str
    """restored | re-enabled | left-disabled (someone else had disabled it) | already-done | not-ours | failed"""
    detail: str = ""


async def restore_guest(
    user_id: str, deps: StaleDeps, *, reason: str = "operator restore", actor: str = ACTOR
) -> RestoreOutcome:
    """Undo our lifecycle for one guest: restore it if we deleted it, re-enable it if we disabled it. `actor`:
    the audit log's actor (an operator signed in to the dashboard; the sweep's own name for the CLI)."""
    record = await deps.state.get(RECORD_KIND, user_id)
    memory = StageMemory.from_json(record.value) if record else None
    if memory is not None and memory.stage is Stage.RESTORED:
        return RestoreOutcome(user_id, "already-done", f"restored on {memory.since:%Y-%m-%d}")
    if memory is None or memory.stage not in (Stage.DISABLED, Stage.DELETED):
        return RestoreOutcome(user_id, "not-ours", "guestwarden has not disabled or deleted this user")
    now = deps.clock()
    if memory.stage is Stage.DELETED and now - memory.since > RESTORE_WINDOW:
        return RestoreOutcome(user_id, "failed", f"deleted on {memory.since:%Y-%m-%d}: past the 30-day window")
    scope = f"{memory.stage}:{memory.since.isoformat()}"
    claim = await deps.state.claim("stale-restore", user_id, scope, owner=deps.owner, lease_seconds=LEASE_SECONDS)
    if not claim.won:
        return RestoreOutcome(user_id, "already-done" if claim.done else "failed", "restore already in progress")
    try:
        requests = [BatchOps.restore(user_id)] if memory.stage is Stage.DELETED else []
        results = await deps.graph.batch(requests) if requests else []
        if results and not results[0].ok:
            raise results[0].error or GraphError(results[0].status, None, "restore failed")
        if memory.we_disabled:
            (enabled,) = await deps.graph.batch([BatchOps.enable(user_id)])
            if not enabled.ok:
                raise enabled.error or GraphError(enabled.status, None, "enable failed")
    except GraphError as exc:
        await deps.state.release(claim)
        return RestoreOutcome(user_id, "failed", str(exc))
    restored = StageMemory(Stage.RESTORED, now, run_id=memory.run_id)
    await deps.state.complete(claim, {"memory": restored.to_json()})
    await write_stage(deps.state, user_id, restored)
    returned = await give_back(
        deps.graph,
        deps.state,
        lambda: now,
        user_id,
        memory.reclaimed,
        deps.config.alerting,
        actor=actor,
        correlation_id=memory.run_id,
    )
    undone = "re-enabled" if memory.we_disabled else "left-disabled"
    status = "restored" if memory.stage is Stage.DELETED else undone
    # an account someone else had disabled before guestwarden acted goes back to that: disabled
    detail = "" if memory.we_disabled else "it was disabled before guestwarden acted, so it stays disabled"
    if returned is not None and (returned.short or returned.failed):
        detail = (
            detail + "; " if detail else ""
        ) + "licences not all given back (no seat: {}{}), admins alerted".format(
            ", ".join(returned.short) or "-", "; " + "; ".join(returned.failed) if returned.failed else ""
        )
    await Auditor(deps.state, actor, lambda: now).record(
        "stale-restore",
        user_id,
        reason=reason,
        outcome=status,
        evidence={
            "stage": str(memory.stage),
            "stageSince": memory.since.isoformat(),
            "reEnabled": memory.we_disabled,
        },
        correlation_id=memory.run_id,
    )
    return RestoreOutcome(user_id, status, detail)


async def restore_run(run_id: str, deps: StaleDeps, *, actor: str = ACTOR) -> list[RestoreOutcome]:
    """Undo every disable and delete one run did (within the 30-day window)."""
    since = deps.clock() - RESTORE_WINDOW - timedelta(days=1)
    subjects: list[str] = []
    async for entry in deps.state.query(since):
        if (
            entry.correlation_id == run_id
            and entry.action in ("stale-disable", "stale-delete")
            and entry.outcome == "done"
            and entry.subject not in subjects
        ):
            subjects.append(entry.subject)
    reason = f"operator restore of run {run_id}"
    return [await restore_guest(user_id, deps, reason=reason, actor=actor) for user_id in subjects]
