"""Use case: the aggregates the dashboard's overview reads (shared.domain.census), kept as guestwarden works.

- Every stage record is written through `write_stage` (the sweep, a restore, a sponsor's or an operator's keep, a
  conversion to member): the guest moves in the stage tally at the same time, under the tally record's ETag.
- Each sweep run ends with `sweep_finished`: the stage tally is rebuilt from the stage records (a writer that died
  between its two writes is corrected here), and the census takes the run's counts (guests by invitation state
  and home domain, the run's status, its done actions per night and home domain).
- `record_seats` keeps the licences per SKU when the nightly posture checks read `subscribedSkus`.
- `count_ticket` counts the home-tenant tickets the risk flow opens, per day.

A record that cannot be written after a few conflicting writers is left for the next run to correct: these are
counts for a page, never what a decision rests on (decisions read the stage records themselves).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from shared.domain.census import Census, RunSummary, Seats, StageTally
from shared.domain.directory import SubscribedSku
from shared.domain.stale import StageMemory
from shared.ports.state import ANY_ETAG, ConflictError, RecordStore, StateStore

log = logging.getLogger(__name__)

STAGE_KIND = "stale-stage"
"""The sweep's stage records, one per guest in the lifecycle (shared.services.stale.deps.RECORD_KIND)."""
KIND = "dashboard"
TALLY_KEY, CENSUS_KEY, SEATS_KEY, TICKETS_KEY = "stage-tally", "census", "seats", "tickets"
TICKET_DAYS = 30
"""How many days of opened tickets are kept (the overview shows the last 30)."""
TRIES = 12
COUNTED_RUNS = 30
"""Run ids remembered as already added to the nights (a run finished twice after a crash counts once)."""

__all__ = [
    "STAGE_KIND",
    "load_census",
    "load_seats",
    "load_tally",
    "rebuild_tally",
    "record_seats",
    "sweep_finished",
    "write_stage",
]


async def _change(
    state: StateStore, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None], *, create: bool
) -> bool:
    """Read-modify-write one aggregate record under its ETag; `change` returns the new value or None (no write).
    Without a record, `change` gets None only when `create` (else nothing is written)."""
    try:
        async for attempt in _retrying():
            with attempt:
                record = await state.get(KIND, key)
                if record is None and not create:
                    return False
                value = change(dict(record.value) if record else None)
                if value is None:
                    return False
                await state.put(KIND, key, value, etag=record.etag if record else None)
    except RetryError:
        log.warning("dashboard aggregate %s: %d conflicting writes in a row, left for the next sweep", key, TRIES)
        return False
    return True


def _retrying() -> AsyncRetrying:
    """Another writer got there first: read the record again, after a short random pause (writers spread out)."""
    return AsyncRetrying(
        retry=retry_if_exception_type(ConflictError),
        stop=stop_after_attempt(TRIES),
        wait=wait_random_exponential(multiplier=0.005, max=0.25),
    )


async def write_stage(state: StateStore, user_id: str, after: StageMemory | None) -> None:
    """Write (or, with None, delete) a guest's stage record, and move the guest in the stage tally. The guest's
    name is carried over from the record before when the new stage does not know it."""
    record = await state.get(STAGE_KIND, user_id)
    before = StageMemory.from_json(record.value) if record else None
    if after is not None and not after.name and before is not None and before.name:
        after = replace(after, name=before.name)  # a restore or a keep does not know the name: keep it
    if after is not None:
        await state.put(STAGE_KIND, user_id, after.to_json(), etag=ANY_ETAG)
    elif record is not None:
        await state.delete(STAGE_KIND, user_id)

    def move(value: dict[str, Any] | None) -> dict[str, Any] | None:
        tally = StageTally.from_json((value or {}).get("days") or {})
        return {**(value or {}), "days": tally.to_json()} if tally.move(before, after) else None

    await _change(state, TALLY_KEY, move, create=False)  # no tally yet: the first sweep builds it


async def rebuild_tally(state: StateStore, clock: Callable[[], datetime]) -> StageTally:
    """Count every stage record again and replace the tally (retried while a writer moves a guest meanwhile)."""
    tally = StageTally()
    try:
        async for attempt in _retrying():
            with attempt:
                record = await state.get(KIND, TALLY_KEY)
                tally = StageTally.of([StageMemory.from_json(r.value) async for r in state.list_records(STAGE_KIND)])
                value = {"days": tally.to_json(), "rebuilt": clock().isoformat()}
                await state.put(KIND, TALLY_KEY, value, etag=record.etag if record else None)
    except RetryError:
        log.warning("dashboard stage tally: not rebuilt, %d conflicting writes in a row", TRIES)
    return tally


async def load_tally(state: StateStore) -> StageTally | None:
    record = await state.get(KIND, TALLY_KEY)
    days = record.value.get("days") if record else None
    return StageTally.from_json(days) if isinstance(days, dict) else None


async def load_census(state: StateStore) -> Census | None:
    record = await state.get(KIND, CENSUS_KEY)
    return Census.from_json(record.value) if record else None


async def load_seats(state: RecordStore) -> Seats | None:
    record = await state.get(KIND, SEATS_KEY)
    return Seats.from_json(record.value) if record else None


async def record_seats(state: RecordStore, skus: Iterable[SubscribedSku], now: datetime) -> None:
    await state.put(KIND, SEATS_KEY, Seats.of(now, skus).to_json(), etag=ANY_ETAG)


async def count_ticket(state: StateStore, now: datetime) -> None:
    """A home-tenant ticket was opened: counted under its day (days older than TICKET_DAYS are dropped)."""
    day, first = f"{now:%Y-%m-%d}", f"{now - timedelta(days=TICKET_DAYS - 1):%Y-%m-%d}"

    def add(value: dict[str, Any] | None) -> dict[str, Any]:
        days = {str(d): int(n) for d, n in ((value or {}).get("days") or {}).items() if str(d) >= first}
        days[day] = days.get(day, 0) + 1
        return {"days": days}

    await _change(state, TICKETS_KEY, add, create=True)


async def tickets_opened(state: RecordStore, now: datetime, days: int = TICKET_DAYS) -> int | None:
    """Tickets opened in the last `days` days (None: none counted yet, e.g. before this version)."""
    record = await state.get(KIND, TICKETS_KEY)
    if record is None:
        return None
    first = f"{now - timedelta(days=days - 1):%Y-%m-%d}"
    counts = record.value.get("days")
    if not isinstance(counts, dict):
        return 0
    return sum(n for d, n in counts.items() if isinstance(n, int) and d >= first)


async def sweep_finished(
    state: StateStore,
    clock: Callable[[], datetime],
    summary: RunSummary,
    seen: tuple[int, Mapping[str, int], Mapping[str, int]] | None,
    done: AsyncIterable[tuple[str, str]] | None,
) -> None:
    """After a sweep run: rebuild the stage tally, and add the run to the census.

    `seen`: (guests, per invitation state, per home domain) when the run read every guest, else None;
    `done`: the (action, home domain) of each action a real run did (None for a dry run or a run that did not act).
    """
    await rebuild_tally(state, clock)
    acted: Counter[str] = Counter()
    per_domain: Counter[str] = Counter()
    if done is not None:
        async for action, domain in done:
            acted[action] += 1
            per_domain[domain] += 1
    today = clock().date()

    def add(value: dict[str, Any] | None) -> dict[str, Any]:
        census = Census.from_json(value or {})
        counted = [str(r) for r in (value or {}).get("counted") or ()]
        if seen is not None:
            census.saw(summary.started, *seen)
        census.ran(summary)
        if done is not None and summary.run_id not in counted:
            census.acted(summary.started.date(), acted, per_domain, today)
            counted = [*counted, summary.run_id][-COUNTED_RUNS:]
        return {**census.to_json(), "counted": counted}

    await _change(state, CENSUS_KEY, add, create=True)
