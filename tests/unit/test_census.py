"""The dashboard's aggregates (shared.domain.census, shared.services.census): the stage tally every stage write keeps
and each sweep rebuilds, the census each sweep run leaves, the seats the posture checks read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

from shared.domain.census import CHART_DAYS, OTHER_DOMAIN, Census, RunSummary, Seats, StageTally, top
from shared.domain.directory import SubscribedSku
from shared.domain.stale import Stage, StageMemory, StalePolicy
from shared.services.census import (
    STAGE_KIND,
    count_ticket,
    load_census,
    load_seats,
    load_tally,
    rebuild_tally,
    record_seats,
    sweep_finished,
    tickets_opened,
    write_stage,
)
from shared.services.stale import restore_guest, sweep_stale_guests
from tests.fakes.state import MemoryStateStore
from tests.unit.test_stale_service import START, Clock, guest, make_deps, tenant

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
POLICY = StalePolicy(warn_grace_days=14, delete_grace_days=30)


def memory(stage: Stage, days_ago: float, **kw: object) -> StageMemory:
    return StageMemory(stage, NOW - timedelta(days=days_ago), **kw)  # type: ignore[arg-type]


def test_the_tally_counts_each_stage_and_the_steps_falling_due_with_overdue_ones_and_the_boundary_day() -> None:
    tally = StageTally.of(
        [
            memory(Stage.WARNED, 0),  # disable due in 14 days: on the boundary, counted
            memory(Stage.WARNED, -1),  # due in 15 days: not yet
            memory(Stage.WARNED, 30),  # overdue: counted
            memory(Stage.DISABLED, 20),  # delete due in 10 days
            memory(Stage.DISABLED, 0),  # delete due in 30 days: not yet
            memory(Stage.KEPT, 100, until=NOW + timedelta(days=3)),  # reviewed again in 3 days
            memory(Stage.DELETED, 5),
            memory(Stage.RESTORED, 2),
        ]
    )
    assert tally.counts() == {"warned": 3, "disabled": 2, "deleted": 1, "restored": 1, "kept": 1}
    assert tally.due(NOW.date(), 14, POLICY) == {"disable": 2, "delete": 1, "review again": 1}
    assert StageTally.from_json(tally.to_json()).counts() == tally.counts()


def test_moving_a_guest_changes_only_its_old_and_new_place_and_the_same_record_twice_changes_nothing() -> None:
    warned, disabled = memory(Stage.WARNED, 15), memory(Stage.DISABLED, 0)
    tally = StageTally.of([warned, memory(Stage.WARNED, 15)])
    assert tally.move(warned, disabled)
    assert not tally.move(disabled, disabled)  # an outcome written again (a resumed run) counts once
    assert tally.counts()["warned"] == 1 and tally.counts()["disabled"] == 1
    assert tally.move(disabled, None)  # left the lifecycle
    assert sum(tally.counts().values()) == 1


async def test_every_stage_write_moves_the_guest_in_the_tally_once_a_sweep_has_built_it() -> None:
    state = MemoryStateStore()
    await write_stage(state, "g1", memory(Stage.WARNED, 1))
    assert await load_tally(state) is None  # nothing to move before the first rebuild: the overview counts records
    await rebuild_tally(state, lambda: NOW)
    await write_stage(state, "g2", memory(Stage.WARNED, 0))
    await write_stage(state, "g1", memory(Stage.DISABLED, 0))
    await write_stage(state, "g1", memory(Stage.DISABLED, 0))  # written twice (a retry): counted once
    await write_stage(state, "gone", None)  # no record: nothing to remove
    tally = await load_tally(state)
    assert tally is not None
    assert {k: v for k, v in tally.counts().items() if v} == {"warned": 1, "disabled": 1}
    await write_stage(state, "g2", None)
    assert await state.get(STAGE_KIND, "g2") is None
    tally = await load_tally(state)
    assert tally is not None and sum(tally.counts().values()) == 1


async def test_concurrent_writers_lose_no_move() -> None:
    state = MemoryStateStore()
    await rebuild_tally(state, lambda: NOW)
    await asyncio.gather(*(write_stage(state, f"g{i}", memory(Stage.WARNED, i % 3)) for i in range(20)))
    tally = await load_tally(state)
    assert tally is not None and tally.counts()["warned"] == 20


async def test_a_rebuild_corrects_a_tally_that_drifted() -> None:
    state = MemoryStateStore()
    await rebuild_tally(state, lambda: NOW)
    await write_stage(state, "g1", memory(Stage.WARNED, 1))
    await state.delete(STAGE_KIND, "g1")  # a writer that died between its two writes, or an old version
    await state.put(STAGE_KIND, "g2", memory(Stage.DISABLED, 1).to_json(), etag=None)
    tally = await rebuild_tally(state, lambda: NOW)
    assert {k: v for k, v in tally.counts().items() if v} == {"disabled": 1}


def summary(run_id: str, started: datetime, *, dry_run: bool = False, status: str = "applied") -> RunSummary:
    return RunSummary(run_id, started, dry_run, status, "", {"done": 3})


async def acts(*pairs: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
    for pair in pairs:
        yield pair


async def test_a_run_leaves_its_counts_in_the_census_and_its_actions_in_its_night_once() -> None:
    state = MemoryStateStore()
    seen = (5, {"accepted": 3, "pending": 2}, {"fabrikam.com": 4, "tailspin.com": 1})
    run = summary("r1", NOW)
    done = (("warn", "fabrikam.com"), ("warn", "tailspin.com"), ("disable", "fabrikam.com"))
    await sweep_finished(state, lambda: NOW, run, seen, acts(*done))
    await sweep_finished(state, lambda: NOW, run, seen, acts(*done))  # finished again after a crash: counted once
    census = await load_census(state)
    assert census is not None and census.guests == 5 and census.as_of == NOW
    assert census.invitation == {"accepted": 3, "pending": 2}
    assert census.last_run == run and census.last_dry_run is None
    chart = census.chart(NOW.date())
    assert chart["actions"]["warn"][-1] == 2 and chart["actions"]["disable"][-1] == 1
    assert chart["domains"] == {"fabrikam.com": [0] * (CHART_DAYS - 1) + [2], "tailspin.com": [0] * 89 + [1]}


async def test_a_dry_run_counts_the_guests_but_no_action_and_an_aborted_run_keeps_the_last_counts() -> None:
    state = MemoryStateStore()
    await sweep_finished(state, lambda: NOW, summary("r1", NOW), (5, {"accepted": 5}, {"a.com": 5}), acts())
    dry = summary("d1", NOW + timedelta(hours=1), dry_run=True, status="dry-run")
    await sweep_finished(state, lambda: NOW, dry, (6, {"accepted": 6}, {"a.com": 6}), None)
    aborted = summary("r2", NOW + timedelta(days=1), status="aborted")
    await sweep_finished(state, lambda: NOW + timedelta(days=1), aborted, None, None)
    census = await load_census(state)
    assert census is not None and census.guests == 6 and census.last_dry_run == dry and census.last_run == aborted
    assert sum(sum(v) for v in census.chart(NOW.date())["actions"].values()) == 0


def test_nights_older_than_the_chart_are_dropped_and_small_domains_are_summed() -> None:
    census = Census()
    old = NOW.date() - timedelta(days=CHART_DAYS)
    census.acted(old, {"delete": 4}, {"a.com": 4}, old)
    census.acted(NOW.date(), {"warn": 1}, {"b.com": 1}, NOW.date())
    assert list(census.nights) == [f"{NOW:%Y-%m-%d}"]
    assert top({f"d{i}.com": i + 1 for i in range(15)}, 12)[OTHER_DOMAIN] == 1 + 2 + 3


async def test_seats_are_kept_per_user_sku_with_what_is_free() -> None:
    state = MemoryStateStore()
    skus = [
        SubscribedSku("s1", "ENTERPRISEPACK", 10, 10, "Enabled", "User"),
        SubscribedSku("s2", "EMS", 25, 5, "Enabled", "User"),
        SubscribedSku("s3", "FLOW_FREE", 10000, 3, "Enabled", "Company"),
    ]
    await record_seats(state, skus, NOW)
    seats = await load_seats(state)
    assert seats is not None and seats.as_of == NOW
    assert [(s.name, s.free) for s in seats.skus] == [("EMS", 20), ("ENTERPRISEPACK", 0)]
    assert Seats.from_json(seats.to_json()) == seats


async def test_a_sweep_leaves_the_tally_equal_to_its_stage_records_and_the_census_of_its_guests() -> None:
    graph = tenant()
    graph.users["pending"] = guest("pending", days_inactive=None, external_user_state="PendingAcceptance")
    clock = Clock()
    deps = make_deps(graph, clock)
    await sweep_stale_guests(deps)
    clock.advance(15)
    plan = await sweep_stale_guests(deps)
    assert plan.counts["disable"] > 0
    records = [StageMemory.from_json(r.value) async for r in deps.state.list_records(STAGE_KIND)]
    tally = await load_tally(deps.state)
    assert tally is not None and tally.counts() == StageTally.of(records).counts()
    census = await load_census(deps.state)
    assert census is not None and census.guests == plan.guests_seen
    assert census.invitation == {"accepted": plan.guests_seen - 1, "pending": 1}
    assert census.last_run is not None and census.last_run.run_id == plan.run_id
    # a restore afterwards moves the guest at once (no sweep needed to see it)
    disabled, *_ = [r.key async for r in deps.state.list_records(STAGE_KIND) if r.value["stage"] == "disabled"]
    await restore_guest(disabled, deps)
    after = await load_tally(deps.state)
    assert after is not None and after.counts()["disabled"] == tally.counts()["disabled"] - 1
    assert after.counts()["restored"] == tally.counts()["restored"] + 1
    assert date.fromisoformat(next(iter(census.nights))) == START.date()


async def test_tickets_are_counted_per_day_for_30_days() -> None:
    state = MemoryStateStore()
    assert await tickets_opened(state, NOW) is None
    for days_ago in (40, 29, 1, 0, 0):
        await count_ticket(state, NOW - timedelta(days=days_ago))
    assert await tickets_opened(state, NOW) == 4  # 29 days ago is the 30th day of the window
    assert await tickets_opened(state, NOW, days=1) == 2
