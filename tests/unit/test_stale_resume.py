"""A sweep cut off at any point is continued by the next invocation: no page read twice, no action repeated, no
guest skipped, and the report covers the whole run (shared/services/stale/journal.py).

The process "dies" by a BaseException at the N-th write it makes (state, report parts, Graph), and stays dead:
nothing it would do afterwards (not even handing its lease on) happens. The next invocation is a new owner on
the same durable stores, after the dead one's lease has run out.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.directory import CreatedRange, DirectoryContact, OutgoingMail
from shared.ports.graph import BatchResult, GraphError, GuestPage
from shared.ports.state import ANY_ETAG, JSONInput
from shared.services.stale import (
    RECORD_KIND,
    StaleDeps,
    StalePlan,
    current_run,
    resume_stale_sweeps,
    run_record,
    sweep_stale_guests,
)
from shared.services.stale.journal import RunJournal
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes_stale import FakeStaleGraph, MemoryReportStore, items_of
from tests.unit.test_stale_service import REAL, START, Clock, guest, make_deps

LEASE = 60
AFTER_LEASE = timedelta(seconds=LEASE + 1)


class Killed(BaseException):
    """SIGKILL: not an Exception, so no handler that catches errors runs its recovery."""


class Process:
    """One process's life: it dies at its `die_at`-th write and everything it does afterwards fails."""

    def __init__(self, die_at: int | None) -> None:
        self.die_at = die_at
        self.writes = 0
        self.dead = False

    def write(self) -> None:
        if self.dead:
            raise Killed
        self.writes += 1
        if self.die_at is not None and self.writes >= self.die_at:
            self.dead = True
            raise Killed


class MortalState(MemoryStateStore):
    process = Process(None)

    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        self.process.write()
        return await super().put(kind, key, value, etag=etag)

    async def delete(self, kind: str, key: str, *, etag: str = "*") -> None:
        self.process.write()
        await super().delete(kind, key, etag=etag)

    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Any:
        self.process.write()
        return await super().claim(action, subject, scope, owner=owner, lease_seconds=lease_seconds)

    async def complete(self, claim: Any, outcome: JSONInput, **audit: Any) -> Any:
        self.process.write()
        return await super().complete(claim, outcome, **audit)

    async def append(self, entry: Any) -> Any:
        self.process.write()
        return await super().append(entry)


class MortalReports(MemoryReportStore):
    process = Process(None)

    async def put_part(self, report: str, name: str, content: bytes) -> None:
        self.process.write()
        await super().put_part(report, name, content)


class MortalGraph(FakeStaleGraph):
    process = Process(None)

    before_batch: Callable[[Any], Awaitable[None]] | None = None

    async def batch(self, requests: Any) -> list[BatchResult]:
        if any(r.method != "GET" for r in requests):
            self.process.write()
            if self.before_batch is not None:
                await self.before_batch(requests)
        return await super().batch(requests)

    async def send_mail(self, mail: OutgoingMail) -> None:
        self.process.write()
        await super().send_mail(mail)


def tenant(n: int = 23) -> MortalGraph:
    """n stale guests and a few active ones, pages of 4: several parts and several batches per action; every
    guest has a sponsor, so warnings are mailed."""
    users = [guest(f"g{i:02d}", account_enabled=not 8 <= i < 12) for i in range(n)]  # g08-g11: disabled by us
    users += [guest(f"active{i}", days_inactive=2) for i in range(5)]
    graph = MortalGraph(users, page_size=4)
    for user in users:
        graph.sponsors[user.id] = [DirectoryContact(f"s-{user.id}", "Sponsor", f"sponsor.{user.id}@contoso.com")]
    return graph


async def remembered(state: MemoryStateStore) -> None:
    """Stage records from earlier nights: g00-g07 warned 20 days ago (disable), g08-g11 disabled 40 days ago
    (delete), active0 warned (reactivate); the rest are warned now."""
    for i in range(8):
        await state.put(
            RECORD_KIND,
            f"g{i:02d}",
            {"stage": "warned", "since": (START - timedelta(days=20)).isoformat()},
            etag=ANY_ETAG,
        )
    for i in range(8, 12):
        disabled = {"stage": "disabled", "since": (START - timedelta(days=40)).isoformat(), "weDisabled": True}
        await state.put(RECORD_KIND, f"g{i:02d}", disabled, etag=ANY_ETAG)
    await state.put(
        RECORD_KIND, "active0", {"stage": "warned", "since": (START - timedelta(days=3)).isoformat()}, etag=ANY_ETAG
    )


async def fresh() -> tuple[MortalGraph, MortalState, MortalReports, Clock]:
    graph, clock = tenant(), Clock()
    state, reports = MortalState(clock=clock), MortalReports()
    live(graph, state, reports, die_at=None)
    await remembered(state)
    return graph, state, reports, clock


def deps_for(graph: FakeStaleGraph, state: MemoryStateStore, reports: MemoryReportStore, clock: Clock) -> StaleDeps:
    config = replace(REAL, lease_seconds=LEASE)
    return make_deps(graph, clock, config, state=state, reports=reports)


def live(*parts: Any, die_at: int | None) -> None:
    process = Process(die_at)
    for part in parts:
        part.process = process


async def run_until_done(
    graph: MortalGraph, state: MortalState, reports: MortalReports, clock: Clock, kills: list[int]
) -> tuple[StalePlan, int]:
    """Run the sweep, killing the process at each of `kills` (its N-th write), restarting after each kill
    with a new owner once the lease has run out; the finished plan and how many times the process died."""
    died = 0
    for die_at in [*kills, None]:
        live(graph, state, reports, die_at=die_at)
        deps = deps_for(graph, state, reports, clock)
        try:
            plan = await (sweep_stale_guests(deps) if died == 0 else _continue(deps))
        except Killed:
            died += 1
            clock.now += AFTER_LEASE
            continue
        if plan.status not in ("running", "busy"):
            return plan, died
    raise AssertionError("the sweep did not finish")


async def _continue(deps: StaleDeps) -> StalePlan:
    plans = await resume_stale_sweeps(deps)
    return plans[0] if plans else await sweep_stale_guests(deps)


async def audit_counts(state: MemoryStateStore) -> Counter[tuple[str, str]]:
    return Counter(
        [
            (e.action, e.subject)
            async for e in state.query(START - timedelta(days=1))
            if e.action != "stale-run" and e.outcome in ("done", "uncertain")
        ]
    )


@dataclass
class Reference:
    plan: StalePlan
    items: list[tuple[str, str, str]]
    writes: list[str]
    mails: int
    process_writes: int


async def reference() -> Reference:
    """What an uninterrupted run does."""
    graph, state, reports, clock = await fresh()
    before = graph.process.writes
    deps = deps_for(graph, state, reports, clock)
    plan = await sweep_stale_guests(deps)
    items = sorted((i.user_id, str(i.action), i.outcome) for i in await items_of(deps, plan))
    return Reference(plan, items, sorted(graph.writes), len(graph.outbox), graph.process.writes - before)


REFERENCE = asyncio.run(reference())


def test_the_reference_run_acts_in_every_way() -> None:
    assert {action for _, action, _ in REFERENCE.items} == {"warn", "disable", "delete", "reactivate"}
    assert REFERENCE.plan.status == "applied" and REFERENCE.plan.slices == 1


@pytest.mark.parametrize("die_at", range(1, REFERENCE.process_writes + 1))
async def test_a_run_killed_at_any_write_is_continued_to_the_same_result_with_every_action_once(die_at: int) -> None:
    expected = REFERENCE
    graph, state, reports, clock = await fresh()

    plan, died = await run_until_done(graph, state, reports, clock, [die_at])

    assert died == 1
    assert plan.status == "applied", plan.message
    assert plan.counts == expected.plan.counts and plan.guests_seen == expected.plan.guests_seen
    deps = deps_for(graph, state, reports, clock)
    # the report covers the whole run: every action "done" by this run (none "already-done" by itself), but a
    # warning whose mailing the kill interrupted, which is "uncertain" and not mailed again
    items = sorted((i.user_id, str(i.action), i.outcome) for i in await items_of(deps, plan))
    uncertain = {user for user, action, outcome in items if outcome == "uncertain"}
    assert len(uncertain) <= 1 and all(user.startswith("g") for user in uncertain)
    assert [(u, a, "done" if u in uncertain else o) for u, a, o in items] == expected.items
    assert sorted(graph.writes) == expected.writes  # every action once: none repeated, none skipped
    mailed = Counter(to for mail in graph.outbox for to in mail.to)
    assert max(mailed.values()) == 1 and len(graph.outbox) >= expected.mails - len(uncertain)
    if uncertain:
        assert "uncertain" in plan.message
    audited = await audit_counts(state)
    assert max(audited.values()) == 1
    assert set(audited) == {(f"stale-{action}", user) for user, action, _ in expected.items}
    assert await current_run(state, dry_run=False) is None  # finished: nothing left for the resume timer


async def test_pages_read_before_a_kill_are_not_read_again() -> None:
    graph, state, reports, clock = await fresh()
    pages = -(-28 // 4)

    await run_until_done(graph, state, reports, clock, [pages + 2])  # dies while reading, after a few parts

    assert graph.pages_read <= pages + 2  # at most the page in hand and the one fetched ahead are read again


async def test_the_resume_timer_continues_a_run_sliced_into_many_invocations() -> None:
    graph, state, reports, clock = await fresh()
    deps = deps_for(graph, state, reports, clock)
    sliced = replace(deps, config=replace(deps.config, slice_seconds=1e-9))  # every checkpoint ends the slice

    first = await sweep_stale_guests(sliced)
    assert first.status == "running"
    assert await current_run(state, dry_run=False) == first.run_id
    ticks = 0
    plan = first
    while plan.status == "running":
        (plan,) = await resume_stale_sweeps(sliced)
        ticks += 1
    assert plan.run_id == first.run_id and plan.status == "applied" and plan.slices == ticks + 1 > 5
    assert plan.counts == REFERENCE.plan.counts and sorted(graph.writes) == REFERENCE.writes
    assert await resume_stale_sweeps(sliced) == []  # nothing left: the tick does nothing


async def test_a_run_held_by_a_live_invocation_is_not_taken_until_its_lease_runs_out() -> None:
    graph, state, reports, clock = await fresh()
    live(graph, state, reports, die_at=12)
    with pytest.raises(Killed):
        await sweep_stale_guests(deps_for(graph, state, reports, clock))
    live(graph, state, reports, die_at=None)
    other = deps_for(graph, state, reports, clock)

    assert await resume_stale_sweeps(other) == []  # the lease still runs: maybe it is only slow
    busy = await sweep_stale_guests(other)
    assert busy.status == "busy" and "another invocation" in busy.message

    clock.now += AFTER_LEASE
    (plan,) = await resume_stale_sweeps(other)
    assert plan.status == "applied" and plan.slices == 2


async def test_an_invocation_whose_run_was_taken_over_stops_at_its_next_checkpoint() -> None:
    """The first invocation stalls in a Graph call past its lease; another takes the run over meanwhile. The first
    stops at its next write to the run record (busy), and the second finishes the run: every action once."""
    graph, state, reports, clock = await fresh()
    first, second = deps_for(graph, state, reports, clock), deps_for(graph, state, reports, clock)
    taken: list[bool] = []

    async def stall_then_lose_the_run(requests: Any) -> None:
        if not taken:
            clock.now += AFTER_LEASE
            run_id = await current_run(state, dry_run=False)
            thief = RunJournal(state, str(run_id), second.owner, clock, LEASE)
            taken.append(await thief.take())

    graph.before_batch = stall_then_lose_the_run
    stalled = await sweep_stale_guests(first)
    graph.before_batch = None

    assert taken == [True]
    assert stalled.status == "busy" and "taken over" in stalled.message
    (plan,) = await resume_stale_sweeps(replace(second, clock=clock)) or [await sweep_stale_guests(second)]
    assert plan.status == "applied" and plan.run_id == stalled.run_id
    assert sorted(graph.writes) == REFERENCE.writes


async def test_a_dry_run_never_continues_a_run_that_acts() -> None:
    graph, state, reports, clock = await fresh()
    live(graph, state, reports, die_at=15)
    with pytest.raises(Killed):
        await sweep_stale_guests(deps_for(graph, state, reports, clock))
    live(graph, state, reports, die_at=None)
    real_run = await current_run(state, dry_run=False)

    dry = await sweep_stale_guests(deps_for(graph, state, reports, clock), dry_run=True)

    assert dry.status == "dry-run" and dry.run_id != real_run
    assert await current_run(state, dry_run=False) == real_run  # still there for the resume timer
    assert graph.writes == [] or all(not w.startswith("disable") for w in graph.writes)


async def test_a_run_older_than_the_resume_limit_is_abandoned_and_a_new_one_decides_again() -> None:
    graph, state, reports, clock = await fresh()
    live(graph, state, reports, die_at=15)
    with pytest.raises(Killed):
        await sweep_stale_guests(deps_for(graph, state, reports, clock))
    old = await current_run(state, dry_run=False)
    live(graph, state, reports, die_at=None)
    clock.now += timedelta(hours=REAL.resume_max_hours + 1)

    plan = await sweep_stale_guests(deps_for(graph, state, reports, clock))

    assert plan.run_id != old and plan.status == "applied"
    record = await run_record(state, str(old))
    assert record is not None and record["status"] == "abandoned" and record["phase"] == "finished"
    outcomes = {e.subject: e.outcome async for e in state.query(START - timedelta(days=1)) if e.action == "stale-run"}
    assert outcomes[str(old)] == "abandoned"
    assert max(Counter(graph.writes).values(), default=0) == 1  # the ledger kept what the old run did single


class ExpiringLinks(MortalGraph):
    """Graph refusing a saved nextLink (a skip token that expired while the run waited)."""

    async def guest_pages(
        self, *, with_sign_in_activity: bool = True, created: CreatedRange | None = None, resume: str | None = None
    ) -> AsyncIterator[GuestPage]:
        if resume is not None:
            raise GraphError(400, "Request_BadRequest", "The specified page token value has expired")
        async for page in super().guest_pages(with_sign_in_activity=with_sign_in_activity, created=created):
            yield page


async def test_a_range_whose_saved_link_expired_is_read_again_and_counted_once() -> None:
    graph, state, reports, clock = await fresh()
    expiring = ExpiringLinks([], page_size=4)
    expiring.users = graph.users

    plan, died = await run_until_done(expiring, state, reports, clock, [5])  # dies after reading a few pages

    assert died == 1 and plan.status == "applied"
    assert plan.guests_seen == REFERENCE.plan.guests_seen and plan.counts == REFERENCE.plan.counts
    items = await items_of(deps_for(expiring, state, reports, clock), plan)
    assert sorted((i.user_id, str(i.action), i.outcome) for i in items) == REFERENCE.items


class Silent(MortalGraph):
    """A chain that ends without a page (no `value`, no nextLink)."""

    async def guest_pages(
        self, *, with_sign_in_activity: bool = True, created: CreatedRange | None = None, resume: str | None = None
    ) -> AsyncIterator[GuestPage]:
        for _ in ():
            yield GuestPage([], None)


async def test_a_tenant_without_guests_finishes_its_run() -> None:
    _, state, reports, clock = await fresh()
    plan = await sweep_stale_guests(deps_for(Silent([]), state, reports, clock))
    assert plan.status == "applied" and plan.guests_seen == 0 and plan.parts == []
