"""Planning a sweep: read the exclusion groups, our stage records and every guest, let the domain decide each
one (shared.domain.stale_plan), then judge the plan (data that looks wrong, caps).

The guests are read page by page from one or more ranges (scan.py); each page's decisions are written to the
report store as a part, then the range's cursor moves past the page (journal.py). A run cut off while reading
continues each range from its cursor: no page is read twice or skipped, and the counts come from the parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from shared.domain.directory import CreatedRange, DirectoryUser
from shared.domain.stale import StageMemory
from shared.domain.stale_plan import (
    PlanItem,
    StalePlan,
    add_to_plan,
    check_caps,
    check_data,
    check_exclusion_group,
    part_name,
)
from shared.ports.graph import GraphError, GuestPage
from shared.services.stale import scan
from shared.services.stale.deps import StaleDeps, load_memories
from shared.services.stale.journal import RangeCursor, RunJournal, log_progress
from shared.services.stale.parts import read_part, report_name, write_part

log = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 30.0
RESUME_REFUSED = (400, 404, 410)
"""What Graph may answer a nextLink it no longer honours (an expired skip token): the range is read again."""


async def choose_ranges(deps: StaleDeps, now: datetime) -> tuple[list[CreatedRange], bool, int | None]:
    """The scan ranges (scan.plan_partitions; [] reads one chain), whether guests without a createdDateTime
    must be read as a last piece, and how many guests there are (for progress and ETA; None if unknown)."""
    concurrency = scan.effective_concurrency(deps.config.scan_concurrency, deps.config.sign_in_activity_per_minute)
    total: int | None = None
    if concurrency > 1:
        try:
            span = await deps.graph.guest_span()
        except GraphError as exc:
            if exc.status != 400:
                raise
            log.warning("the guest span query was refused (%s): reading the guests in one chain", exc)
        else:
            ranges = scan.plan_partitions(span.dated, span.earliest, now, concurrency=concurrency)
            if ranges:
                total = await _count(deps)
                undated = total is None or total > span.dated
                return ranges, undated, total if total is not None else span.dated
    return [], False, await _count(deps)


async def _count(deps: StaleDeps) -> int | None:
    try:
        return await deps.graph.count_guests()
    except GraphError as exc:
        if exc.status != 400:
            raise
        log.warning("counting the guests was refused (%s): progress is shown without an ETA", exc)
        return None


async def read_exclusions(deps: StaleDeps, plan: StalePlan) -> set[str] | None:
    """The users of every exclusion group, nested groups' members included (transitive members); None, and the
    plan aborted, as soon as one group is past STALE_EXCLUDE_GROUP_MAX_MEMBERS (its remaining pages unread)."""
    excluded: set[str] = set()
    cap = deps.config.exclude_group_max_members
    for group_id in sorted(deps.policy.exclude_group_ids):
        read = 0
        try:
            async for page in deps.graph.transitive_member_pages(group_id):
                read += page.members
                excluded.update(page.user_ids)
                if not check_exclusion_group(plan, group_id, read, cap):  # the next page is never asked for
                    log.warning("stale run %s: %s", plan.run_id, plan.message)
                    return None
        except GraphError as exc:
            if exc.status not in (401, 403):
                raise
            plan.status = "aborted"
            plan.message = (
                f"Graph refused to list the members of exclusion group {group_id} ({exc.status} {exc.code}): the "
                "app needs GroupMember.Read.All (User.Read.All does not grant it). Nobody was judged without "
                "knowing who is excluded. Nothing was changed."
            )
            return None
        log.info("stale run %s: exclusion group %s has %d transitive member(s)", plan.run_id, group_id, read)
    return excluded


class _Reader:
    """Reads the run's ranges from their cursors, writing each page's decisions as a part."""

    def __init__(self, deps: StaleDeps, journal: RunJournal, plan: StalePlan, now: datetime) -> None:
        self.deps = deps
        self.journal = journal
        self.plan = plan
        self.now = now
        self.report = report_name(plan.run_id)
        self.memories: dict[str, StageMemory] = {}
        self.excluded: set[str] = set()
        self.read = 0
        self.total = journal.value.get("total")
        self.tallies: dict[int, StalePlan] = {}
        """Per piece, the counts of the pages this invocation wrote (of the piece's current attempt)."""
        self.written: set[str] = set()
        """The parts this invocation wrote: their counts are in `tallies`, not read back."""
        self._logged = time.monotonic()

    async def run(self, cursors: list[RangeCursor]) -> None:
        excluded = await read_exclusions(self.deps, self.plan)
        if excluded is None:  # an exclusion group past its cap: the plan says so, and nobody is judged
            return
        self.excluded = excluded
        self.memories = await load_memories(self.deps.state)
        self.read = sum(c.guests for c in cursors)
        ranges = self.journal.ranges
        pending = deque(c for c in cursors if not c.done and c.piece < max(1, len(ranges)))
        concurrency = scan.effective_concurrency(
            self.deps.config.scan_concurrency, self.deps.config.sign_in_activity_per_minute
        )

        async def worker() -> None:
            while pending:
                await self._read_range(pending.popleft())

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, min(concurrency, len(pending)))):
                    group.create_task(worker())
        except BaseExceptionGroup as failures:  # one range failed (or the slice ended): the others stopped
            raise failures.exceptions[0] from None
        if self.journal.undated and not cursors[-1].done:
            await self._read_undated(cursors[-1])

    async def _read_range(self, cursor: RangeCursor) -> None:
        ranges = self.journal.ranges
        created = ranges[cursor.piece] if ranges else None
        while not cursor.done:
            resumed = cursor.next
            try:
                async for page in self._pages(created, cursor.next):
                    users = [u for u in page.users if created is None or created.owns(u)]
                    cursor.guests += await self._write_page(cursor, users)
                    cursor.pages += 1
                    cursor.next = page.next
                    cursor.done = page.next is None
                    await self.journal.save(cursor)
                    await self.journal.checkpoint()
                    resumed = None
                if not cursor.done:  # the chain ended without a last page saying so (no guests at all)
                    cursor.done = True
                    await self.journal.save(cursor)
            except GraphError as exc:
                if resumed is None or exc.status not in RESUME_REFUSED:
                    raise
                log.warning(
                    "stale run %s: Graph refused to continue range %d from its saved link (%s): reading it again",
                    self.plan.run_id,
                    cursor.piece,
                    exc,
                )
                self.read -= cursor.guests  # progress: those guests are read again
                cursor.attempt, cursor.pages, cursor.next, cursor.guests = cursor.attempt + 1, 0, None, 0
                self.tallies.pop(cursor.piece, None)
                await self.journal.save(cursor)

    async def _pages(self, created: CreatedRange | None, resume: str | None) -> AsyncIterator[GuestPage]:
        """The range's pages, the next one fetched while the caller decides and stores the current one (the
        quota, not our own writes, stays the limit). A run cut off reads at most the pages fetched ahead again."""
        queue: asyncio.Queue[GuestPage | BaseException | None] = asyncio.Queue()

        async def fetch() -> None:
            try:
                async for page in self.deps.graph.guest_pages(created=created, resume=resume):
                    await queue.put(page)
                    await queue.join()  # taken: fetch the next one while it is worked on (one page ahead)
            except BaseException as exc:  # the reader raises it: a refused link (read the range again), or worse
                queue.put_nowait(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            await queue.put(None)

        task = asyncio.create_task(fetch())
        try:
            while (item := await queue.get()) is not None:
                queue.task_done()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read_undated(self, cursor: RangeCursor) -> None:
        """Guests without a createdDateTime: one id chain, then by id. Not continued mid-way (their chain is
        cheap and rare): a cut-off reading is done again under a new attempt, whose parts replace the old."""
        self.read -= cursor.guests
        cursor.attempt, cursor.pages, cursor.guests = cursor.attempt + 1, 0, 0
        self.tallies.pop(cursor.piece, None)
        ids = await scan.undated_ids(self.deps.graph)
        async for users in scan.read_by_id(self.deps.graph, ids, with_sign_in_activity=True):
            cursor.guests += await self._write_page(cursor, users)
            cursor.pages += 1
        cursor.done = True
        await self.journal.save(cursor)
        await self.journal.checkpoint()

    async def _write_page(self, cursor: RangeCursor, users: list[DirectoryUser]) -> int:
        """Decide a page, store it as the cursor's next part; the guests it held."""
        page = StalePlan(self.plan.run_id, self.plan.started, self.plan.dry_run)
        items: list[PlanItem] = []
        for user in users:
            item = add_to_plan(
                page, user, self.memories.get(user.id), self.now, self.deps.policy, user.id in self.excluded
            )
            if item is not None:
                items.append(item)
        name = part_name(cursor.piece, cursor.attempt, cursor.pages)
        await write_part(self.deps.reports, self.report, name, page.tally(), items)
        self.tallies.setdefault(cursor.piece, StalePlan(self.plan.run_id, self.plan.started, False)).absorb(
            page.tally()
        )
        self.written.add(name)
        self.read += page.guests_seen
        self._progress()
        return page.guests_seen

    def _progress(self) -> None:
        if self.deps.on_progress:
            self.deps.on_progress("reading", self.read, self.total)
        if time.monotonic() - self._logged >= PROGRESS_LOG_SECONDS:
            self._logged = time.monotonic()
            log_progress(self.plan.run_id, "guests read", self.read, self.total, self._logged - self.journal.started_at)


async def read_guests(deps: StaleDeps, journal: RunJournal, plan: StalePlan) -> None:
    """The reading phase, from wherever the run's cursors stand; then the counts of every part, the checks."""
    cursors = await journal.cursors()
    reader = _Reader(deps, journal, plan, plan.started)
    if not all(c.done for c in cursors):
        try:
            await reader.run(cursors)
            if plan.status == "aborted":  # the exclusions could not be read whole: nothing was decided
                return
        except GraphError as exc:
            if exc.status not in (401, 403):
                raise
            plan.status = "aborted"
            plan.message = (
                f"Graph refused to list guests with signInActivity ({exc.status} {exc.code}): the tenant needs "
                "Entra ID P1/P2 and the app needs AuditLog.Read.All (and User.Read.All). Nothing was changed."
            )
            return
        cursors = await journal.cursors()
    plan.parts = [name for cursor in cursors for name in cursor.parts()]
    for piece in reader.tallies.values():  # counted while reading; the parts of earlier invocations are read back
        plan.absorb(piece.tally())
    report = report_name(plan.run_id)
    for name in plan.parts:
        if name not in reader.written:
            plan.absorb((await read_part(deps.reports, report, name, items=False))[0])
    check_data(plan, deps.config.abort_missing_activity_percent)
    if plan.status == "planned":
        check_caps(plan, deps.config.max_actions, deps.config.max_percent)
    if plan.status == "planned" and plan.dry_run:
        plan.status = "dry-run"


async def iter_parts(
    deps: StaleDeps, plan: StalePlan, *, items: bool = True
) -> AsyncIterator[tuple[dict[str, Any], list[PlanItem]]]:
    """Each plan part's tally and items, in plan order (one part in memory at a time)."""
    report = report_name(plan.run_id)
    for name in plan.parts:
        yield await read_part(deps.reports, report, name, items=items)
