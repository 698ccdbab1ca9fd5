"""Running a sweep, in as many invocations as it takes: plan (plan.py), check, and (only when not a dry run
and every check passed) act; always report and audit.

A run is started by the nightly timer (or the CLI) and continued by any later invocation (the resume timer, the
next night's timer, the CLI) from where its journal says it stopped (journal.py): a run cut off at any point -
timeout, recycled instance, SIGKILL - repeats no read and no action and skips no guest.

Acting goes part by part (a part = one page of the plan): every step claims ("stale-<action>", user, scope) in
the idempotency ledger first, where the scope names the lifecycle episode (see `StaleDecision.scope`), so a
run continued after a crash finds what was done (DONE: the stage record is repaired from the ledger's outcome,
nothing is repeated) and does what was not. When a part is done its items and outcomes are written as its
`acted-` part and the run's `acted` count moves past it. Every action is audited with its evidence
(correlation id = the run id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from typing import Any

from shared.domain.attestation import reviewer
from shared.domain.census import ACTIONS_CHARTED
from shared.domain.directory import DirectoryContact, OutgoingMail
from shared.domain.stale import ACT_ORDER, Action, Reclaim
from shared.domain.stale_plan import PlanItem, StalePlan, memory_after, new_run_id
from shared.ports.graph import BATCH_LIMIT, BatchOps, BatchRequest, BatchResult, GraphError
from shared.ports.state import ANY_ETAG, Claim
from shared.services.audit import Auditor
from shared.services.census import sweep_finished
from shared.services.stale.deps import ACTOR, StaleDeps, audit, audit_entry, write_memory
from shared.services.stale.journal import (
    RunJournal,
    RunTakenOver,
    SliceOver,
    current_run,
    log_progress,
    run_record,
)
from shared.services.stale.parts import acted_name, read_part, report_name, write_part
from shared.services.stale.plan import PROGRESS_LOG_SECONDS, choose_ranges, iter_parts, read_guests
from shared.services.stale.reclaim import give_back, reclaim_requests, reclaimed_from
from shared.services.stale.reinvite import reinvite_before_purge
from shared.services.stale.report import iter_items, write_reports

log = logging.getLogger(__name__)

REQUESTS_PER_USER = {Action.DISABLE: 2, Action.DELETE: 1, Action.REACTIVATE: 1, Action.WARN: 1}
"""Sub-requests per user and action (a disable is PATCH + revokeSignInSessions, a warning reads the sponsors),
plus a disable's licence reclaim (`_cost`): chunks fill a `$batch` of 20."""


def _cost(item: PlanItem, action: Action) -> int:
    """How many `$batch` items acting on `item` takes."""
    return REQUESTS_PER_USER[action] + len(reclaim_requests(item.user_id, _reclaim(item, action)))


async def sweep_stale_guests(deps: StaleDeps, *, dry_run: bool | None = None, run_id: str | None = None) -> StalePlan:
    """Start a run, or continue the unfinished run of the same mode (dry or not) if it is younger than
    STALE_RESUME_MAX_HOURS and nobody is working on it. Returns the run's plan: finished (dry-run, capped,
    aborted, applied, incomplete), `running` when this invocation's time slice ended first (the resume timer
    continues it), or `busy` when another invocation holds the run."""
    dry = deps.config.dry_run if dry_run is None else dry_run
    if run_id is not None:
        record = await run_record(deps.state, run_id)
        if record is not None and record.get("phase") == "finished":
            return _journal(deps, run_id).plan_of(record)  # nothing left to do: as it finished
    journal = await _open(deps, dry, run_id)
    if journal is None:
        current = await current_run(deps.state, dry)
        plan = StalePlan(current or "", deps.clock(), dry, status="busy")
        plan.message = f"stale run {current} is being worked on by another invocation; nothing was done."
        log.info(plan.message)
        return plan
    return await _work(deps, journal)


async def resume_stale_sweeps(deps: StaleDeps) -> list[StalePlan]:
    """The resume timer: continue each unfinished run (dry and real) whose lease has expired; nothing else."""
    plans: list[StalePlan] = []
    for dry in (False, True):
        run_id = await current_run(deps.state, dry)
        if run_id is None:
            continue
        journal = _journal(deps, run_id)
        if await journal.take():
            log.info("stale sweep %s: continuing (slice %d)", run_id, journal.value.get("slices", 1))
            plans.append(await _work(deps, journal))
    return plans


def _journal(deps: StaleDeps, run_id: str) -> RunJournal:
    return RunJournal(
        deps.state,
        run_id,
        deps.owner,
        deps.clock,
        deps.config.lease_seconds,
        slice_seconds=deps.config.slice_seconds,
    )


async def _open(deps: StaleDeps, dry_run: bool, run_id: str | None) -> RunJournal | None:
    """The journal of the run to work on, under our lease; None if another invocation holds it."""
    now = deps.clock()
    wanted = run_id or await current_run(deps.state, dry_run)
    if wanted is not None:
        record = await run_record(deps.state, wanted)
        if record is not None and record.get("phase") != "finished":
            started = datetime.fromisoformat(str(record["started"]))
            if run_id or now - started <= timedelta(hours=deps.config.resume_max_hours):
                journal = _journal(deps, wanted)
                return journal if await journal.take() else None
            await _abandon(deps, wanted, record, started)
    journal = _journal(deps, run_id or new_run_id(now))
    ranges, undated, total = await choose_ranges(deps, now)
    await journal.create(now, dry_run, ranges, undated, total)
    return journal


async def _abandon(deps: StaleDeps, run_id: str, record: dict[str, Any], started: datetime) -> None:
    """A run too old to continue (its plan was decided on data from `started`): recorded as abandoned, and the
    new run decides again (the ledger keeps any action it already did from being repeated)."""
    journal = _journal(deps, run_id)
    if not await journal.take():
        return
    plan = journal.plan()
    plan.status = "abandoned"
    plan.message = (
        f"started {started:%Y-%m-%d %H:%M} UTC and not finished within STALE_RESUME_MAX_HOURS="
        f"{deps.config.resume_max_hours:g}: a new run decides again."
    )
    await journal.finish(plan)
    await _audit_run(deps, plan)
    await _count_run(deps, plan)
    log.warning("stale sweep %s: abandoned, %s", run_id, plan.message)


async def _work(deps: StaleDeps, journal: RunJournal) -> StalePlan:
    plan = journal.plan()
    await deps.state.flush_outbox()  # audit entries a killed invocation's completions left pending
    try:
        if journal.phase == "reading":
            await read_guests(deps, journal, plan)
            await journal.update(
                phase="acting" if plan.status == "planned" else "reporting", status=plan.status, message=plan.message
            )
        else:
            plan.parts = [name for cursor in await journal.cursors() for name in cursor.parts()]
            async for tally, _ in iter_parts(deps, plan, items=False):
                plan.absorb(tally)
        if journal.phase == "acting":
            await _execute(plan, deps, journal)
            plan.status = "incomplete" if plan.not_done else "applied"
            notes = []
            if plan.not_done:
                notes.append(f"{plan.not_done} action(s) not done; the next run takes them up again.")
            if plan.outcomes["uncertain"]:
                notes.append(
                    f"{plan.outcomes['uncertain']} warning(s) uncertain: whether Graph sent them is unknown (an "
                    "invocation died while mailing, or a timeout/5xx); not sent again (see the report and audit log)."
                )
            plan.message = " ".join(notes)
        elif plan.status != "aborted":
            async for _, items in iter_parts(deps, plan):
                plan.outcomes.update("would-do" if plan.status == "dry-run" else "not-done" for _ in items)
        await _finish(plan, deps, journal)
    except SliceOver:
        await journal.pause()
        plan.status = "running"
        plan.message = "the run continues at the next resume tick (STALE_RESUME_SCHEDULE)"
        log.info("stale sweep %s: slice %d ended, %s", plan.run_id, plan.slices, plan.message)
    except RunTakenOver as exc:
        plan.status = "busy"
        plan.message = str(exc)
        log.warning("stale sweep %s: %s", plan.run_id, exc)
    except BaseException:
        # A failure we can report (Graph, the stores): the next invocation may continue at once. Only a process
        # that dies without getting here leaves its lease to run out.
        await asyncio.shield(journal.pause())
        raise
    return plan


async def _finish(plan: StalePlan, deps: StaleDeps, journal: RunJournal) -> None:
    plan.reports = await write_reports(deps, plan)
    await _audit_run(deps, plan)
    await _count_run(deps, plan)
    await journal.finish(plan)
    log.info("stale sweep %s: %s %s (%d slice(s))", plan.run_id, plan.status, dict(plan.counts), plan.slices)


READ_WHOLE = ("dry-run", "capped", "applied", "incomplete")
"""Run statuses that read every guest (an aborted run may have stopped reading, or read data that looks wrong)."""


async def _count_run(deps: StaleDeps, plan: StalePlan) -> None:
    """The dashboard's aggregates (shared.services.census): the stage tally rebuilt, the run in the census."""
    summary = plan.summary()
    seen = None
    if plan.status in READ_WHOLE:
        per_domain = {domain: sum(counts.values()) for domain, counts in plan.per_domain.items()}
        seen = (plan.guests_seen, dict(plan.invitation), per_domain)

    async def done() -> AsyncIterator[tuple[str, str]]:
        async for item in iter_items(deps.reports, plan):
            if item.outcome == "done" and str(item.action) in ACTIONS_CHARTED:
                yield str(item.action), item.home_domain

    acted = not plan.dry_run and plan.status in ("applied", "incomplete")
    await sweep_finished(deps.state, deps.clock, summary, seen, done() if acted else None)


async def _audit_run(deps: StaleDeps, plan: StalePlan) -> None:
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
            "outcomes": dict(plan.outcomes),
            "slices": plan.slices,
            "reports": plan.reports,
        },
        correlation_id=plan.run_id,
    )


async def _execute(plan: StalePlan, deps: StaleDeps, journal: RunJournal) -> None:
    """Act action by action (reactivations first), in full `$batch`es that run across parts. The run record's
    `acted` cursor ([action, part]) says that every item of that action in the parts before it is done and its
    outcomes written (the part's `acted-<action>-` part); a run cut off continues from there."""
    acting = _Acting(plan, deps, journal)
    start_action, start_part = journal.acted_at
    for index, action in enumerate(ACT_ORDER):
        if index >= start_action:
            await acting.run(index, action, start_part if index == start_action else 0)


class _Acting:
    """One action's pass over the parts: a FIFO of items (with their part) cut into full batches."""

    def __init__(self, plan: StalePlan, deps: StaleDeps, journal: RunJournal) -> None:
        self.plan, self.deps, self.journal = plan, deps, journal
        self.report = report_name(plan.run_id)
        self.total = plan.items_planned
        self.done = sum(plan.outcomes.values())
        self.logged = time.monotonic()

    async def run(self, index: int, action: Action, first_part: int) -> None:
        queue: deque[tuple[int, PlanItem]] = deque()
        open_parts: dict[int, list[PlanItem]] = {}
        for part in range(first_part, len(self.plan.parts)):
            _, items = await read_part(self.deps.reports, self.report, self.plan.parts[part])
            mine = [item for item in items if item.action is action]
            open_parts[part] = mine
            queue.extend((part, item) for item in mine)
            while sum(_cost(item, action) for _, item in queue) >= BATCH_LIMIT:
                await self._batch(action, _full_batch(queue, action))
                await self._close(index, action, open_parts, queue, upto=part)
            await self._close(index, action, open_parts, queue, upto=part)
        while queue:
            await self._batch(action, _full_batch(queue, action))
        await self._close(index, action, open_parts, queue, upto=len(self.plan.parts))

    async def _batch(self, action: Action, chunk: list[tuple[int, PlanItem]]) -> None:
        if await _run_chunk(self.plan, [item for _, item in chunk], action, self.deps):
            await self.journal.checkpoint()  # after work was done: every slice moves the run on
        self.done += len(chunk)
        if self.deps.on_progress:
            self.deps.on_progress("acting", self.done, self.total)
        if time.monotonic() - self.logged >= PROGRESS_LOG_SECONDS:
            self.logged = time.monotonic()
            log_progress(self.plan.run_id, "actions done", self.done, self.total, self.logged - self.journal.started_at)

    async def _close(
        self,
        index: int,
        action: Action,
        open_parts: dict[int, list[PlanItem]],
        queue: deque[tuple[int, PlanItem]],
        upto: int,
    ) -> None:
        """Write the outcomes of every part whose items of `action` are all done, and move the cursor past it."""
        waiting = queue[0][0] if queue else upto + 1
        finished = sorted(part for part in open_parts if part < waiting and part <= upto)
        for part in finished:
            items = open_parts.pop(part)
            name = acted_name(self.plan.parts[part], str(action))
            await write_part(self.deps.reports, self.report, name, {}, items)
            self.plan.outcomes.update(item.outcome for item in items)
        if finished:
            nxt = (index, finished[-1] + 1) if finished[-1] + 1 < len(self.plan.parts) else (index + 1, 0)
            await self.journal.update(acted=list(nxt), outcomes=dict(self.plan.outcomes))


def _full_batch(queue: deque[tuple[int, PlanItem]], action: Action) -> list[tuple[int, PlanItem]]:
    """Take from the front of `queue` as many items as fit one `$batch` (at least one)."""
    chunk = [queue.popleft()]
    used = _cost(chunk[0][1], action)
    while queue and used + _cost(queue[0][1], action) <= BATCH_LIMIT:
        used += _cost(queue[0][1], action)
        chunk.append(queue.popleft())
    return chunk


async def _run_chunk(plan: StalePlan, chunk: list[PlanItem], action: Action, deps: StaleDeps) -> bool:
    """Claim and act on one batch; whether anything was acted on (False: all done or held already)."""
    won: list[tuple[PlanItem, Claim]] = []
    for item in chunk:
        claim = await deps.state.claim(
            f"stale-{action}", item.user_id, item.scope, owner=deps.owner, lease_seconds=deps.config.lease_seconds
        )
        if claim.done:
            outcome = claim.outcome or {}
            await write_memory(deps, item.user_id, outcome.get("memory"))
            if outcome.get("runId") == plan.run_id:
                # Done (and audited) by this run in an invocation cut off before it wrote the part's outcomes.
                item.outcome = str(outcome.get("result") or "done")
                if action is Action.WARN:
                    await deps.state.delete(MAIL_INTENT_KIND, item.user_id)
            else:
                item.outcome = "already-done"
        elif claim.held:
            item.outcome = "held"
        else:
            won.append((item, claim))
    if not won:
        return False
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
    return True


def _reclaim(item: PlanItem, action: Action) -> Reclaim:
    planned = item.evidence.get("reclaim") if action is Action.DISABLE else None
    return Reclaim.from_json(planned) if isinstance(planned, dict) else Reclaim()


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
    already = await _already_done(won, action, deps)
    requests = [r for item, _ in won if item.user_id not in already for r in _requests(item, action)]
    # licences go with the account: taken back in the same batch (an earlier attempt may have disabled it)
    requests += [r for item, _ in won for r in reclaim_requests(item.user_id, _reclaim(item, action))]
    results = {r.id: r for r in (await deps.graph.batch(requests) if requests else [])}
    for item, claim in won:
        reclaimed, reclaim_failed = reclaimed_from(item.user_id, _reclaim(item, action), results)
        extra: dict[str, Any] = {}
        if reclaimed or reclaim_failed:
            extra = {"reclaimed": reclaimed.to_json(), "reclaimFailed": reclaim_failed}
        if item.user_id in already:
            pending.pop(id(item))
            extra["recovered"] = "an earlier attempt had done it"
            await _settle(deps, plan, item, claim, action, "done", extra, reclaimed)
            continue
        mine = [results[r.id] for r in _requests(item, action)]
        failures = [r for r in mine if not _succeeded(r, action)]
        graph = {r.id: r.status for r in mine}
        if failures:
            error = failures[0].error
            item.outcome = f"failed: {error}" if error else "failed"
            await deps.state.release(pending.pop(id(item)))
            await audit(deps, plan, item, "failed", {"graph": graph, **extra})
            continue
        pending.pop(id(item))
        await _settle(deps, plan, item, claim, action, "done", {"graph": graph, **extra}, reclaimed)
        if action is Action.REACTIVATE and item.enable and item.memory is not None:
            await give_back(
                deps.graph,
                deps.state,
                deps.clock,
                item.user_id,
                item.memory.reclaimed,
                deps.config.alerting,
                actor=ACTOR,
                correlation_id=plan.run_id,
            )


async def _already_done(won: list[tuple[PlanItem, Claim]], action: Action, deps: StaleDeps) -> set[str]:
    """Users an earlier attempt acted on without recording it (its process died between Graph's answer and the
    ledger): only claims taken over (attempt > 1) are checked, by reading the account as it is now."""
    target = action is Action.REACTIVATE  # the account enabled again; a disable: disabled
    # Only a change from what the plan saw counts: an account someone else had disabled is still disabled (and
    # its sessions revoked) by us, as in a run without a kill.
    retried = [
        item.user_id
        for item, claim in won
        if claim.attempt > 1 and (action is Action.DELETE or item.account_enabled is (not target))
    ]
    if not retried or action is Action.WARN:
        return set()
    found = {u.id: u for u in await deps.graph.get_users(retried, with_sign_in_activity=False)}
    if action is Action.DELETE:
        return {uid for uid in retried if uid not in found}
    return {uid for uid in retried if uid in found and found[uid].account_enabled is target}


async def _settle(
    deps: StaleDeps,
    plan: StalePlan,
    item: PlanItem,
    claim: Claim,
    action: Action,
    result: str,
    extra: dict[str, Any],
    reclaimed: Reclaim | None = None,
) -> None:
    """Record an action that happened: the ledger's completion and its audit entry in one state write (the
    outbox, shared/ports/state.py), carrying the stage memory and the run id; then the stage record. A process
    killed after the completion leaves a claim that a continued run finds "done by this run": its audit entry
    is already there, and the stage record is repaired from the completion."""
    memory = memory_after(item, action, deps.clock(), plan.run_id, reclaimed or None)
    outcome = {"memory": memory.to_json() if memory else None, "runId": plan.run_id, "result": result}
    await deps.state.complete(claim, outcome, audit=audit_entry(deps, plan, item, result, extra))
    if action is Action.WARN:
        await deps.state.delete(MAIL_INTENT_KIND, item.user_id)
    await write_memory(deps, item.user_id, outcome["memory"])
    item.outcome = result


MAIL_INTENT_KIND = "stale-mail-intent"
"""Written before a warning is mailed and removed once its claim is completed or released: a claim taken over
while it exists means the process died while mailing, so whether the sponsors got it is unknown."""


async def _warn(plan: StalePlan, won: list[tuple[PlanItem, Claim]], deps: StaleDeps, pending: dict[int, Claim]) -> None:
    sponsors = await deps.graph.sponsors_of([item.user_id for item, _ in won])
    now = deps.clock()
    for item, claim in won:
        # --- issue 17 item 2: re-send a never-redeemed invitation, once per episode (its own claim; reinvite.py) ---
        await reinvite_before_purge(plan, item, deps)
        addressed = _addressees(sponsors.get(item.user_id, ()), deps.config.fallback_reviewers)
        recipients = sorted(addressed)
        if claim.attempt > 1 and await deps.state.get(MAIL_INTENT_KIND, item.user_id) is not None:
            await _uncertain_warning(plan, item, claim, recipients, deps)
            pending.pop(id(item))
            continue
        await deps.state.put(MAIL_INTENT_KIND, item.user_id, {"scope": item.scope, "runId": plan.run_id}, etag=ANY_ETAG)
        try:
            mailed = await _send_warnings(item, addressed, now, plan.run_id, deps)
        except GraphError as exc:
            if exc.status is None or exc.status >= 500:  # maybe sent (a timeout, a 5xx): never mail twice
                await _uncertain_warning(plan, item, claim, recipients, deps, f"sendMail outcome unknown: {exc}")
                pending.pop(id(item))
                continue
            item.outcome = f"failed: {exc}"  # refused: certainly not sent, the next run tries again
            await deps.state.delete(MAIL_INTENT_KIND, item.user_id)
            await deps.state.release(pending.pop(id(item)))
            await audit(deps, plan, item, "failed", {"sponsors": recipients})
            continue
        extra: dict[str, Any] = {"mailed": mailed, "sponsors": recipients}
        groups = sorted({c.via_group for c in sponsors.get(item.user_id, ()) if c.via_group})
        if groups:
            extra["sponsorGroups"] = groups  # sponsors by membership of these sponsor groups
        if not any(c.mail for c in sponsors.get(item.user_id, ())):
            extra["note"] = "the guest has no sponsor with a mail address" + (
                ": mailed to STALE_FALLBACK_REVIEWERS" if recipients else ""
            )
        if deps.config.attest is not None and mailed:
            extra["attestationLinks"] = len(addressed)
        pending.pop(id(item))
        await _settle(deps, plan, item, claim, Action.WARN, "done", extra)


async def _uncertain_warning(
    plan: StalePlan,
    item: PlanItem,
    claim: Claim,
    recipients: list[str],
    deps: StaleDeps,
    note: str = "the process died while mailing this warning",
) -> None:
    """The warning may or may not have reached the sponsors: not mailed again (at most once), recorded as
    `uncertain` in the ledger, the report and the audit log, so an operator can check MAIL_SENDER's sent items.
    The guest's warning period starts as if it had been sent."""
    note += ": not sent again; check the sender's sent items"
    await _settle(deps, plan, item, claim, Action.WARN, "uncertain", {"sponsors": recipients, "note": note})
    log.warning("stale sweep %s: the warning of %s is uncertain (%s)", plan.run_id, item.user_id, note)


def _addressees(contacts: Iterable[DirectoryContact], reviewers: Iterable[str]) -> dict[str, str]:
    """Who gets the warning: mail address -> the sponsor its attestation link names (the sponsor's object id;
    a sponsor reached twice, directly and through a group, gets one mail). Without any sponsor with a mail
    address, the fallback reviewers."""
    addressed: dict[str, str] = {}
    for contact in contacts:
        if contact.mail and contact.mail.lower() not in addressed:
            addressed[contact.mail.lower()] = contact.id
    if not addressed:
        addressed = {mail.lower(): reviewer(mail) for mail in reviewers}
    return addressed


async def _send_warnings(
    item: PlanItem, sponsors: dict[str, str], now: datetime, run_id: str, deps: StaleDeps
) -> list[str]:
    """One mail per sponsor (each carries its own attestation link when links are on), then the guest's."""
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
        "attest_url": None,
        "keep_days": deps.config.attest.keep_days if deps.config.attest else None,
    }
    mailed: list[str] = []
    for mail, sponsor in sorted(sponsors.items()):
        attest = deps.config.attest
        link = attest.link(item.user_id, sponsor, item.scope, now) if attest else None
        subject, body = deps.templates.mail("sponsor_warning", {**context, "attest_url": link})
        await deps.graph.send_mail(OutgoingMail(sender, (mail,), subject, body))
        mailed.append(mail)
    if deps.config.notify_guest and item.mail:
        subject, body = deps.templates.mail("guest_warning", context)
        await deps.graph.send_mail(OutgoingMail(sender, (item.mail,), subject, body))
        mailed.append(item.mail)
    return mailed
