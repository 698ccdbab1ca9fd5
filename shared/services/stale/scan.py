"""Reading every guest fast enough for 100,000-guest tenants: the stale sweep's partitioned scan.

One `@odata.nextLink` chain is strictly sequential: with signInActivity Graph pages at most 500 users at a time
(120 until 2023), so 100,000 guests are 200 to 834 round trips one after the other. Instead the guests are cut
into createdDateTime ranges (`userType eq 'Guest' and createdDateTime ge A and createdDateTime le B`, filters
Graph serves without advanced query parameters) that STALE_SCAN_CONCURRENCY workers page at the same time.

- Every guest is read exactly once: ranges (shared.domain.directory.CreatedRange) are half-open [low, high)
  on our side. Graph's `lt` is not documented for createdDateTime, so the gateway asks a range's `le high`
  (shared/adapters/graph/mapping.py: created_filter) and the scan drops the users created exactly at `high`
  (the next range owns them).
- Guests without a createdDateTime (some created before June 2018) are in no range, and Graph documents no
  `createdDateTime eq null` filter for users (user.md, filter-directory-objects.md: eq, ne, not, ge, le, in).
  When the guests are partitioned, one `$count` of all guests tells whether there are any (all minus the
  dated ones); only then are they found by one cheap chain of ids and createdDateTime (Graph's largest pages,
  no signInActivity) and read whole by id in `$batch`es of 20.
- Boundaries come from the span (GraphGateway.guest_span): the number of dated guests and the earliest
  createdDateTime; the last range is open-ended.
- Cost: the span and the count, plus at most one partly filled page per range; ranges are few enough that
  this stays within EXTRA_REQUESTS_BUDGET (5%) of the pages Graph needs anyway. A tenant too small to gain
  pays the span only, then is read in one chain (which includes the undated guests).
- Throttling: a 429 on any range holds every range for its Retry-After (GraphGateway.throttle).
- Memory: one page per range worker at a time; each page's decisions go to the report store (plan.py).
- Resume: each range keeps a cursor (its pages and nextLink) in state (journal.py), so a run cut off reads on
  from there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from shared.domain.directory import CreatedRange, DirectoryUser
from shared.ports.graph import ScanGraph

log = logging.getLogger(__name__)

SIGN_IN_ACTIVITY_PAGE = 500
"""The page size expected with signInActivity (user-list.md; 120 before 2023): an estimate for planning only,
the pages are read as Graph cuts them."""
EXTRA_REQUESTS_BUDGET = 0.05
"""Ranges cost extra requests (the span query, the null range, a partly filled last page per range): at most
this fraction of the pages the guests need anyway, so a tenant too small to gain is read in one chain."""
RANGES_PER_WORKER = 3
"""More ranges than workers, taken from a shared list: uneven ranges (guests are rarely spread evenly in
time) still keep every worker busy until the end."""


SPAN_REQUESTS = 2
"""Partitioning costs two requests: the span (dated guests, earliest date) and the count of all guests."""
UNDATED_BATCH = 20
"""Undated guests are read by id in `$batch`es of this many (Graph's maximum per batch)."""


QUOTA_BOUND_PER_MINUTE = 60
"""A signInActivity quota of at most this many requests a minute is slower than one chain of pages at any
sane latency (a page a second or more): the scan is bound by the quota, not by round trips."""


def effective_concurrency(concurrency: int, sign_in_activity_per_minute: int) -> int:
    """STALE_SCAN_CONCURRENCY, unless the signInActivity quota is the limit: then ranges read at once gain
    nothing (they all wait for the same quota) and cost a partial page each, so one chain is read."""
    if 0 < sign_in_activity_per_minute <= QUOTA_BOUND_PER_MINUTE:
        return 1
    return concurrency


def plan_partitions(
    guests: int, earliest: datetime | None, now: datetime, *, concurrency: int, page_size: int | None = None
) -> list[CreatedRange]:
    """The createdDateTime ranges to read (`guests`: the dated ones), or [] to read in one chain."""
    pages = math.ceil(guests / (page_size or SIGN_IN_ACTIVITY_PAGE))
    pieces = min(concurrency * RANGES_PER_WORKER, math.floor(pages * EXTRA_REQUESTS_BUDGET) - SPAN_REQUESTS)
    if concurrency < 2 or earliest is None or pieces < 2 or earliest >= now:
        return []
    start = earliest.replace(microsecond=0)
    step = (now - start) / pieces
    bounds = sorted({start + timedelta(seconds=int((step * i).total_seconds())) for i in range(1, pieces)})
    edges: list[datetime | None] = [None, *bounds, None]
    return [CreatedRange(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


async def undated_ids(graph: ScanGraph) -> list[str]:
    """The ids of the guests without a createdDateTime, from one chain of ids (no signInActivity, so Graph's
    largest pages and none of that quota). Only their ids are kept."""
    ids: list[str] = []
    async for page in graph.iter_guest_pages(with_sign_in_activity=False, ids_and_dates_only=True):
        ids.extend(user.id for user in page if user.created is None)
    log.info("found %d guest(s) without a createdDateTime: reading them by id", len(ids))
    return ids


async def read_by_id(
    graph: ScanGraph, ids: list[str], *, with_sign_in_activity: bool
) -> AsyncIterator[list[DirectoryUser]]:
    """The undated guests, read whole by id in `$batch`es."""
    for start in range(0, len(ids), UNDATED_BATCH):
        users = await graph.get_users(ids[start : start + UNDATED_BATCH], with_sign_in_activity=with_sign_in_activity)
        yield [user for user in users if user.created is None and user.user_type == "Guest"]
