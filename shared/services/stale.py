"""Use case: the nightly stale-guest sweep, and undoing it.

`sweep_stale_guests`:

1. reads the exclusion groups' members, our stage records (who was warned or disabled when) and then the guests
   with signInActivity page by page, and lets shared.domain.stale decide each one;
2. refuses to act when the data looks wrong: Graph refused signInActivity, or more than
   STALE_ABORT_MISSING_ACTIVITY_PERCENT of the guests lack it (no Entra ID P1/P2, or AuditLog.Read.All missing);
3. refuses to act when the plan would warn/disable/delete more than STALE_MAX_ACTIONS guests or
   STALE_MAX_PERCENT of them; the plan is still reported, for review;
4. in a dry run (the default) stops there; otherwise acts in `$batch`es: every step claims
   ("stale-<action>", user, scope) in the idempotency ledger first, where the scope names the lifecycle episode
   (see `StaleDecision.scope`), so a rerun after a crash finds what was done (DONE: the stage record is repaired
   from the ledger's outcome, nothing is repeated) and does what was not (skipping nothing);
5. audits every action with its evidence (correlation id = the run id), and writes a CSV and an HTML report.

`restore_guest` / `restore_run` undo what the sweep did (restore from deletedItems within 30 days, re-enable
what we disabled); the guest's inactivity clock then restarts.
"""

from __future__ import annotations

import logging
import math
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jinja2 import Environment

from shared.domain.directory import DirectoryUser, OutgoingMail
from shared.domain.stale import ACTING, Action, Stage, StageMemory, StalePolicy, decide
from shared.ports.graph import BATCH_LIMIT, BatchOps, BatchRequest, BatchResult, GraphError, StaleGraph
from shared.ports.reports import ReportStore
from shared.ports.state import ANY_ETAG, AuditEntry, Claim, StateStore
from shared.services import stale_scan
from shared.services.stale_report import render_csv, render_html, render_mail

log = logging.getLogger(__name__)

ACTOR = "stale-sweep"
RECORD_KIND = "stale-stage"
LEASE_SECONDS = 900
RESTORE_WINDOW = timedelta(days=30)
REQUESTS_PER_USER = {Action.DISABLE: 2, Action.DELETE: 1, Action.REACTIVATE: 1, Action.WARN: 1}
"""Sub-requests per user and action (a disable is PATCH + revokeSignInSessions, a warning reads the sponsors):
chunks fill a `$batch` of 20."""


@dataclass(frozen=True, slots=True)
class StaleConfig:
    dry_run: bool = True
    max_actions: int = 50
    max_percent: float = 10.0
    abort_missing_activity_percent: float = 50.0
    scan_concurrency: int = 1
    """createdDateTime ranges read at once (shared/services/stale_scan.py); 1 reads one nextLink chain."""
    sign_in_activity_per_minute: int = 0
    """The signInActivity quota the gateway paces to (0: none). When it, not latency, is the limit, ranges read
    at once gain nothing and cost partial pages: the scan reads one chain (stale_scan.effective_concurrency)."""
    notify_guest: bool = False
    mail_sender: str | None = None


Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class StaleDeps:
    graph: StaleGraph
    state: StateStore
    reports: ReportStore
    templates: Environment
    policy: StalePolicy
    config: StaleConfig
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"stale-{uuid.uuid4()}")
    on_progress: Progress | None = None
    """Called with ("reading", guests so far) and ("acting", actions so far): the CLI's progress bar."""


@dataclass(slots=True)
class PlanItem:
    """One guest the run acts on (or would): what, why, on which evidence, and how it ended."""

    user_id: str
    display_name: str
    user_principal_name: str
    mail: str
    home_domain: str
    account_enabled: bool | None
    action: Action
    reason: str
    scope: str
    evidence_items: tuple[tuple[str, ...], tuple[Any, ...]]
    """The evidence as (keys, values), the keys tuple shared by all items: a plan can hold tens of thousands of
    items, and a dict each was a third of a 100,000-guest sweep's memory (bench/RESULTS.md)."""
    enable: bool = False
    restart_clock: bool = False
    memory: StageMemory | None = None
    outcome: str = "planned"

    @property
    def evidence(self) -> dict[str, Any]:
        keys, values = self.evidence_items
        return dict(zip(keys, values, strict=True))

    def as_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "displayName": self.display_name,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "homeDomain": self.home_domain,
            "action": str(self.action),
            "reason": self.reason,
            "outcome": self.outcome,
            "reEnable": self.enable,
            "evidence": self.evidence,
        }


@dataclass(slots=True)
class StalePlan:
    run_id: str
    started: datetime
    dry_run: bool
    status: str = "planned"
    """dry-run | capped | aborted | applied | incomplete"""
    message: str = ""
    guests_seen: int = 0
    guests_without_activity: int = 0
    accepted_guests: int = 0
    """Guests who redeemed their invitation: the ones a missing signInActivity is judged against."""
    accepted_without_activity: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    """Per decision: keep, skip:<reason>, warn, disable, delete, reactivate."""
    per_domain: dict[str, Counter[str]] = field(default_factory=dict)
    items: list[PlanItem] = field(default_factory=list)
    """Only the guests acted on (or that would be): keeps and skips are counted, not kept (constant memory)."""
    reports: list[str] = field(default_factory=list)

    @property
    def acting(self) -> int:
        return sum(1 for item in self.items if item.action in ACTING)

    def as_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "started": self.started.isoformat(),
            "dryRun": self.dry_run,
            "status": self.status,
            "message": self.message,
            "guestsSeen": self.guests_seen,
            "guestsWithoutSignInActivity": self.guests_without_activity,
            "acceptedGuestsWithoutSignInActivity": self.accepted_without_activity,
            "counts": dict(sorted(self.counts.items())),
            "perDomain": {d: dict(sorted(c.items())) for d, c in sorted(self.per_domain.items())},
            "items": [item.as_json() for item in self.items],
            "reports": self.reports,
        }


# --------------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------------


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


async def load_memories(state: StateStore) -> dict[str, StageMemory]:
    return {r.key: StageMemory.from_json(r.value) async for r in state.list_records(RECORD_KIND)}


async def build_plan(deps: StaleDeps, run_id: str | None = None, *, dry_run: bool | None = None) -> StalePlan:
    now = deps.clock()
    plan = StalePlan(run_id or new_run_id(now), now, deps.config.dry_run if dry_run is None else dry_run)
    excluded: set[str] = set()
    for group_id in sorted(deps.policy.exclude_group_ids):
        excluded |= await deps.graph.group_member_ids(group_id)
    memories = await load_memories(deps.state)
    try:
        concurrency = stale_scan.effective_concurrency(
            deps.config.scan_concurrency, deps.config.sign_in_activity_per_minute
        )
        pages = stale_scan.iter_guest_pages(deps.graph, concurrency=concurrency, now=now)
        async for page in pages:
            for user in page:
                _plan_one(plan, user, memories.get(user.id), now, deps.policy, user.id in excluded)
            if deps.on_progress:
                deps.on_progress("reading", plan.guests_seen)
        plan.items.sort(key=lambda item: item.user_id)  # the same plan whatever order the pages came in
    except GraphError as exc:
        if exc.status in (401, 403):
            plan.status = "aborted"
            plan.message = (
                f"Graph refused to list guests with signInActivity ({exc.status} {exc.code}): the tenant needs "
                "Entra ID P1/P2 and the app needs AuditLog.Read.All (and User.Read.All). Nothing was changed."
            )
            return plan
        raise
    _check_data(plan, deps.config)
    if plan.status == "planned":
        _check_caps(plan, deps.config)
    if plan.status == "planned" and plan.dry_run:
        plan.status = "dry-run"
    return plan


def _plan_one(
    plan: StalePlan,
    user: DirectoryUser,
    memory: StageMemory | None,
    now: datetime,
    policy: StalePolicy,
    excluded: bool,
) -> None:
    decision = decide(user, memory, now, policy, member_of_excluded_group=excluded)
    if not user.is_guest:
        plan.counts[f"skip:{decision.reason}"] += 1
        return
    plan.guests_seen += 1
    if user.has_joined:
        plan.accepted_guests += 1
    if user.sign_in_activity is None:
        plan.guests_without_activity += 1
        plan.accepted_without_activity += user.has_joined
    label = str(decision.action) if decision.action not in (Action.SKIP,) else f"skip:{decision.reason}"
    plan.counts[label] += 1
    domain = user.home_domain or "(unknown)"
    plan.per_domain.setdefault(domain, Counter())[str(decision.action)] += 1
    if decision.action in (Action.KEEP, Action.SKIP):
        return
    evidence = dict(decision.evidence)
    if decision.due:
        evidence["due"] = decision.due.isoformat()
    plan.items.append(
        PlanItem(
            user_id=user.id,
            display_name=user.display_name or "",
            user_principal_name=user.user_principal_name or "",
            mail=user.mail or "",
            home_domain=sys.intern(domain),
            account_enabled=user.account_enabled,
            action=decision.action,
            reason=decision.reason,
            scope=decision.scope,
            evidence_items=_compact(evidence),
            enable=decision.enable,
            restart_clock=decision.restart_clock,
            memory=memory,
        )
    )


_EVIDENCE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _compact(evidence: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    keys = tuple(evidence)
    return _EVIDENCE_KEYS.setdefault(keys, keys), tuple(evidence.values())


def _check_data(plan: StalePlan, config: StaleConfig) -> None:
    """A tenant without Entra ID P1/P2 or an app without AuditLog.Read.All gets a 403 (handled in build_plan), not
    empty activity: a null signInActivity means "never signed in" (or not since April 2020). Pending invitations
    are expected to have none, so only guests who redeemed count; a large share of them without any activity is
    data that looks wrong, and the run stops before acting on it."""
    if plan.accepted_guests == 0:
        return
    missing = 100.0 * plan.accepted_without_activity / plan.accepted_guests
    if missing > config.abort_missing_activity_percent:
        plan.status = "aborted"
        plan.message = (
            f"{plan.accepted_without_activity} of the {plan.accepted_guests} guests who redeemed their invitation "
            f"({missing:.0f}%) have no signInActivity at all (more than STALE_ABORT_MISSING_ACTIVITY_PERCENT="
            f"{config.abort_missing_activity_percent:g}%). Graph served signInActivity (no 403), so this is not a "
            "missing licence or permission: check the sample in the report, then raise the setting if these "
            "guests really never signed in. Nothing was changed."
        )


def _check_caps(plan: StalePlan, config: StaleConfig) -> None:
    by_percent = math.floor(plan.guests_seen * config.max_percent / 100.0)
    limit = min(config.max_actions, by_percent)
    if plan.acting > limit:
        plan.status = "capped"
        plan.message = (
            f"The plan would warn, disable or delete {plan.acting} of {plan.guests_seen} guests, more than the cap "
            f"of {limit} (STALE_MAX_ACTIONS={config.max_actions}, STALE_MAX_PERCENT={config.max_percent:g}%). "
            "Nothing was changed: review the plan, then raise the caps or fix the exclusions."
        )


# --------------------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------------------


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
    await deps.state.append(
        AuditEntry(
            at=deps.clock(),
            actor=ACTOR,
            action="stale-run",
            subject=plan.run_id,
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
            await _write_memory(deps, item.user_id, (claim.outcome or {}).get("memory"))
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
            await _audit(deps, plan, item, "failed", {"graph": graph})
            continue
        memory = _memory_after(item, action, now, plan.run_id)
        await deps.state.complete(claim, {"memory": memory.to_json() if memory else None, "graph": graph})
        pending.pop(id(item))
        await _write_memory(deps, item.user_id, memory.to_json() if memory else None)
        item.outcome = "done"
        await _audit(deps, plan, item, "done", {"graph": graph})


def _memory_after(item: PlanItem, action: Action, now: datetime, run_id: str) -> StageMemory | None:
    if action is Action.WARN:
        return StageMemory(Stage.WARNED, now, run_id=run_id)
    if action is Action.DISABLE:
        return StageMemory(Stage.DISABLED, now, we_disabled=item.account_enabled is not False, run_id=run_id)
    if action is Action.DELETE:
        we_disabled = item.memory.we_disabled if item.memory else False
        return StageMemory(Stage.DELETED, now, we_disabled=we_disabled, run_id=run_id)
    if item.restart_clock:
        return StageMemory(Stage.RESTORED, now, run_id=run_id)
    return None  # active again: forget the episode


async def _write_memory(deps: StaleDeps, user_id: str, value: Any) -> None:
    if isinstance(value, dict):
        await deps.state.put(RECORD_KIND, user_id, value, etag=ANY_ETAG)
    else:
        await deps.state.delete(RECORD_KIND, user_id)


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
            await _audit(deps, plan, item, "failed", {"sponsors": recipients})
            continue
        memory = _memory_after(item, Action.WARN, now, plan.run_id)
        assert memory is not None
        await deps.state.complete(claim, {"memory": memory.to_json(), "mailed": mailed})
        pending.pop(id(item))
        await _write_memory(deps, item.user_id, memory.to_json())
        item.outcome = "done"
        extra: dict[str, Any] = {"mailed": mailed, "sponsors": recipients}
        groups = sorted({c.via_group for c in sponsors.get(item.user_id, ()) if c.via_group})
        if groups:
            extra["sponsorGroups"] = groups  # sponsors by membership of these sponsor groups
        if not recipients:
            extra["note"] = "the guest has no sponsor with a mail address"
        await _audit(deps, plan, item, "done", extra)


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
        subject, body = render_mail(deps.templates, "sponsor_warning", context)
        await deps.graph.send_mail(OutgoingMail(sender, tuple(sponsors), subject, body))
        mailed += sponsors
    if deps.config.notify_guest and item.mail:
        subject, body = render_mail(deps.templates, "guest_warning", context)
        await deps.graph.send_mail(OutgoingMail(sender, (item.mail,), subject, body))
        mailed.append(item.mail)
    return mailed


async def _audit(deps: StaleDeps, plan: StalePlan, item: PlanItem, outcome: str, extra: dict[str, Any]) -> None:
    await deps.state.append(
        AuditEntry(
            at=deps.clock(),
            actor=ACTOR,
            action=f"stale-{item.action}",
            subject=item.user_id,
            reason=item.reason,
            dry_run=False,
            outcome=outcome,
            evidence={**item.evidence, **extra, "scope": item.scope, "reEnable": item.enable},
            correlation_id=plan.run_id,
        )
    )


# --------------------------------------------------------------------------------------------------------
# undo
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    user_id: str
    status: str
    """restored | re-enabled | left-disabled (someone else had disabled it) | already-done | not-ours | failed"""
    detail: str = ""


async def restore_guest(user_id: str, deps: StaleDeps, *, reason: str = "operator restore") -> RestoreOutcome:
    """Undo our lifecycle for one guest: restore it if we deleted it, re-enable it if we disabled it."""
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
    await deps.state.put(RECORD_KIND, user_id, restored.to_json(), etag=ANY_ETAG)
    undone = "re-enabled" if memory.we_disabled else "left-disabled"
    status = "restored" if memory.stage is Stage.DELETED else undone
    # an account someone else had disabled before guestwarden acted goes back to that: disabled
    detail = "" if memory.we_disabled else "it was disabled before guestwarden acted, so it stays disabled"
    await deps.state.append(
        AuditEntry(
            at=now,
            actor=ACTOR,
            action="stale-restore",
            subject=user_id,
            reason=reason,
            dry_run=False,
            outcome=status,
            evidence={
                "stage": str(memory.stage),
                "stageSince": memory.since.isoformat(),
                "reEnabled": memory.we_disabled,
            },
            correlation_id=memory.run_id,
        )
    )
    return RestoreOutcome(user_id, status, detail)


async def restore_run(run_id: str, deps: StaleDeps) -> list[RestoreOutcome]:
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
    return [await restore_guest(user_id, deps, reason=f"operator restore of run {run_id}") for user_id in subjects]
