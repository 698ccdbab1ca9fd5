"""A sweep's progress in state, so that any invocation can continue a run another one started.

A 100,000-guest sweep outlives one invocation under Graph's quotas (20 minutes of reading alone), and an
instance can be recycled, time out or be killed at any instruction. So a run keeps, in the state store:

- its run record (kind `stale-run`, key = run id): phase (reading, acting, finished), the scan ranges it chose,
  the lease of the invocation working on it, how far acting got (`acted`: [action, part]) and the outcomes so
  far;
- one cursor per scan range (kind `stale-scan`, key `<run id>.<range>`): the pages read and written as parts,
  and the `@odata.nextLink` to continue from;
- a pointer to the unfinished run of each mode (kind `stale-sweep`, key `current-apply` / `current-dry-run`).

The plan itself is not in state: each page's decisions go to the report store as a part (part_name) *before*
its cursor moves past it, so a page is either counted once or read again, never lost or counted twice.

One invocation works on a run at a time: it holds the run's lease (owner + until, written with the record's
etag) and renews it at every checkpoint; an invocation that finds the lease expired takes the run over, and the
one that lost it stops at its next checkpoint (RunTakenOver). The resume timer (functions/stale.py) continues a
run whose lease has expired: a run killed mid-way waits at most STALE_SWEEP_LEASE_SECONDS plus one tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.directory import CreatedRange
from shared.domain.stale_plan import StalePlan, part_name
from shared.ports.state import ANY_ETAG, ConflictError, StateStore

log = logging.getLogger(__name__)

RUN_KIND = "stale-run"
CURSOR_KIND = "stale-scan"
POINTER_KIND = "stale-sweep"


def pointer_key(dry_run: bool) -> str:
    """Dry runs and real runs each have their own unfinished run: a dry run never continues a run that acts."""
    return "current-dry-run" if dry_run else "current-apply"


class RunTakenOver(Exception):
    """Another invocation took this run over (our lease had expired): stop without writing anything more."""


class SliceOver(Exception):
    """This invocation used its time budget (STALE_SWEEP_SLICE_MINUTES): the run is saved and continues later."""


@dataclass(slots=True)
class RangeCursor:
    """How far one scan range (piece) was read. `attempt` grows when a range is read again from its start (a
    nextLink Graph no longer honours); only the parts of the current attempt count."""

    piece: int
    attempt: int = 0
    pages: int = 0
    next: str | None = None
    done: bool = False
    guests: int = 0
    """Guests read in the pages so far (for progress)."""

    def parts(self) -> list[str]:
        return [part_name(self.piece, self.attempt, page) for page in range(self.pages)]

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "pages": self.pages,
            "next": self.next,
            "done": self.done,
            "guests": self.guests,
        }

    @classmethod
    def from_json(cls, piece: int, value: dict[str, Any]) -> RangeCursor:
        nxt = value.get("next")
        return cls(
            piece,
            int(value["attempt"]),
            int(value["pages"]),
            str(nxt) if nxt else None,
            bool(value["done"]),
            int(value.get("guests", 0)),
        )


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


@dataclass(slots=True)
class RunJournal:
    """The run record of one run, held under this invocation's lease."""

    state: StateStore
    run_id: str
    owner: str
    clock: Callable[[], datetime]
    lease_seconds: int
    slice_seconds: float = 0
    """0: no time budget (the CLI runs to the end)."""
    value: dict[str, Any] = field(default_factory=dict)
    etag: str = ""
    started_at: float = field(default_factory=time.monotonic)
    _renewed_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- the run record -----------------------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return str(self.value.get("phase", "reading"))

    @property
    def dry_run(self) -> bool:
        return bool(self.value.get("dryRun", True))

    @property
    def ranges(self) -> list[CreatedRange]:
        return [CreatedRange(_when(low), _when(high)) for low, high in self.value.get("ranges") or ()]

    @property
    def undated(self) -> bool:
        """Guests without a createdDateTime are read as a last piece (only when the guests are partitioned)."""
        return bool(self.value.get("undated", False))

    @property
    def pieces(self) -> int:
        return max(1, len(self.ranges)) + (1 if self.undated else 0)

    @property
    def acted_at(self) -> tuple[int, int]:
        """(action, part): where acting goes on (see execute._execute)."""
        action, part = self.value.get("acted") or (0, 0)
        return int(action), int(part)

    def plan(self) -> StalePlan:
        """The run's summary as far as the record knows it (counts are added from the parts when read)."""
        return self.plan_of(self.value)

    def plan_of(self, v: dict[str, Any]) -> StalePlan:
        """`plan()` from a run record `v`."""
        plan = StalePlan(self.run_id, datetime.fromisoformat(str(v["started"])), bool(v.get("dryRun", True)))
        plan.reports = [str(r) for r in v.get("reports") or ()]
        plan.status = str(v.get("status", "planned"))
        plan.message = str(v.get("message", ""))
        plan.outcomes = Counter({str(k): int(n) for k, n in (v.get("outcomes") or {}).items()})
        plan.slices = int(v.get("slices", 1))
        return plan

    async def create(
        self, started: datetime, dry_run: bool, ranges: list[CreatedRange], undated: bool, total: int | None
    ) -> None:
        """Record a new run (ConflictError if the run id exists) and make it the current run of its mode."""
        self.value = {
            "runId": self.run_id,
            "started": started.isoformat(),
            "dryRun": dry_run,
            "phase": "reading",
            "ranges": [[_stamp(r.low), _stamp(r.high)] for r in ranges],
            "undated": undated,
            "total": total,
            "slices": 1,
            **self._lease(),
        }
        self.etag = await self.state.put(RUN_KIND, self.run_id, self.value, etag=None)
        self._renewed_at = time.monotonic()
        await self.state.put(POINTER_KIND, pointer_key(dry_run), {"runId": self.run_id}, etag=ANY_ETAG)

    async def take(self) -> bool:
        """Take the existing run over if nobody holds its lease; False if another invocation does."""
        record = await self.state.get(RUN_KIND, self.run_id)
        if record is None:
            raise LookupError(f"stale run {self.run_id} has no run record")
        until = _when(record.value.get("leaseUntil"))
        if record.value.get("owner") != self.owner and until is not None and until > self.clock():
            return False
        value = {**record.value, "slices": int(str(record.value.get("slices", 1))) + 1, **self._lease()}
        try:
            self.etag = await self.state.put(RUN_KIND, self.run_id, value, etag=record.etag)
        except ConflictError:
            return False
        self.value = value
        self._renewed_at = time.monotonic()
        return True

    def _lease(self) -> dict[str, Any]:
        return {"owner": self.owner, "leaseUntil": (self.clock() + timedelta(seconds=self.lease_seconds)).isoformat()}

    async def update(self, **changes: Any) -> None:
        """Write the run record (renewing the lease) if it is still ours; RunTakenOver if it is not."""
        async with self._lock:
            value = {**self.value, **changes, **self._lease()}
            try:
                self.etag = await self.state.put(RUN_KIND, self.run_id, value, etag=self.etag)
            except ConflictError:
                raise RunTakenOver(f"stale run {self.run_id} was taken over by another invocation") from None
            self.value = value
            self._renewed_at = time.monotonic()

    async def checkpoint(self) -> None:
        """Called between units of work: renew the lease when a third of it has passed, and stop the slice
        when its time budget is used (the caller's cursors are saved before this is called)."""
        if self.slice_seconds and time.monotonic() - self.started_at >= self.slice_seconds:
            raise SliceOver(f"stale run {self.run_id}: slice of {self.slice_seconds:g} s used")
        if time.monotonic() - self._renewed_at >= self.lease_seconds / 3:
            await self.update()

    async def pause(self) -> None:
        """Leave the run for the next invocation at once (its lease ends now)."""
        value = {**self.value, "leaseUntil": self.clock().isoformat()}
        try:
            self.etag = await self.state.put(RUN_KIND, self.run_id, value, etag=self.etag)
            self.value = value
        except ConflictError:
            pass  # already taken over: nothing to hand on

    async def finish(self, plan: StalePlan) -> None:
        await self.update(phase="finished", status=plan.status, message=plan.message, reports=plan.reports)
        pointer = await self.state.get(POINTER_KIND, pointer_key(self.dry_run))
        if pointer is not None and pointer.value.get("runId") == self.run_id:
            await self.state.delete(POINTER_KIND, pointer_key(self.dry_run), etag=pointer.etag)

    # --- range cursors -------------------------------------------------------------------------------------
    async def cursors(self) -> list[RangeCursor]:
        found: list[RangeCursor] = []
        for piece in range(self.pieces):
            record = await self.state.get(CURSOR_KIND, f"{self.run_id}.{piece}")
            found.append(RangeCursor.from_json(piece, record.value) if record else RangeCursor(piece))
        return found

    async def save(self, cursor: RangeCursor) -> None:
        await self.state.put(CURSOR_KIND, f"{self.run_id}.{cursor.piece}", cursor.to_json(), etag=ANY_ETAG)


async def current_run(state: StateStore, dry_run: bool) -> str | None:
    """The unfinished run of this mode, if any."""
    pointer = await state.get(POINTER_KIND, pointer_key(dry_run))
    return str(pointer.value["runId"]) if pointer else None


async def run_record(state: StateStore, run_id: str) -> dict[str, Any] | None:
    record = await state.get(RUN_KIND, run_id)
    return dict(record.value) if record else None


def log_progress(run_id: str, what: str, done: int, total: int | None, elapsed: float) -> None:
    """A periodic progress line (every PROGRESS_LOG_SECONDS), with the run id to find it in the logs."""
    if total and done:
        eta = elapsed * (total - done) / done
        log.info(
            "stale sweep %s: %s %d of %d (%.0f%%), about %.0f s left",
            run_id,
            what,
            done,
            total,
            100 * done / total,
            eta,
        )
    else:
        log.info("stale sweep %s: %s %d", run_id, what, done)
