"""The partitioned guest scan's ranges: they cover every createdDateTime exactly once, boundaries included."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from shared.adapters.graph import created_filter
from shared.domain.directory import CreatedRange as Partition
from shared.domain.directory import DirectoryUser
from shared.services.stale.scan import effective_concurrency, plan_partitions

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EARLIEST = datetime(2019, 3, 1, 12, 30, 15, tzinfo=UTC)


def owners(partitions: list[Partition], created: datetime | None) -> list[Partition]:
    user = DirectoryUser(id="u", created=created)
    return [p for p in partitions if p.owns(user)]


def test_a_large_tenant_is_cut_into_ranges_that_use_only_documented_filters() -> None:
    parts = plan_partitions(100_000, EARLIEST, NOW, concurrency=8, page_size=120)
    assert len(parts) == 8 * 3
    assert parts[0].low is None and parts[-1].high is None
    for left, right in itertools.pairwise(parts):
        assert left.high == right.low and left.high is not None and left.high.microsecond == 0
    # user.md: createdDateTime supports eq, ne, not, ge, le, in; never `eq null`, gt or lt
    assert created_filter(parts[0]).startswith("createdDateTime le ")
    assert created_filter(parts[-1]).startswith("createdDateTime ge ") and " and " not in created_filter(parts[-1])
    assert created_filter(parts[1]).startswith("createdDateTime ge ") and " and createdDateTime le " in (
        created_filter(parts[1])
    )
    for part in parts:
        assert not any(op in created_filter(part) for op in (" eq null", " gt ", " lt "))


def test_every_moment_belongs_to_exactly_one_range_even_on_a_boundary() -> None:
    parts = plan_partitions(100_000, EARLIEST, NOW, concurrency=4, page_size=120)
    boundaries = [p.high for p in parts if p.high is not None]
    moments: list[datetime] = [EARLIEST - timedelta(days=400), EARLIEST, NOW, NOW + timedelta(days=1)]
    for edge in boundaries:
        moments += [edge, edge - timedelta(microseconds=1), edge + timedelta(microseconds=1)]
    for moment in moments:
        assert len(owners(parts, moment)) == 1, moment
    for edge in boundaries:  # a guest created exactly on a boundary belongs to the range that starts there
        (owner,) = owners(parts, edge)
        assert owner.low == edge
    assert owners(parts, None) == []  # the undated guests are read by id, not by a range


def test_small_tenants_and_a_concurrency_of_one_read_one_chain() -> None:
    too_few = 59 * 120  # 59 pages: 5% of them cannot pay for the two span queries and two ranges
    assert plan_partitions(too_few, EARLIEST, NOW, concurrency=8, page_size=120) == []
    assert plan_partitions(100_000, EARLIEST, NOW, concurrency=1, page_size=120) == []
    assert plan_partitions(100_000, None, NOW, concurrency=8, page_size=120) == []  # no guest has a createdDateTime


def test_ranges_stay_few_enough_that_their_partial_pages_cost_under_five_percent() -> None:
    for guests in (6_000, 10_000, 50_000, 100_000, 1_000_000):
        pages = -(-guests // 120)
        parts = plan_partitions(guests, EARLIEST, NOW, concurrency=16, page_size=120)
        extra = len(parts) + 1  # a partial page per range, and the span query
        assert extra <= 0.05 * pages, (guests, len(parts))


def test_when_the_sign_in_activity_quota_is_the_limit_one_chain_is_read() -> None:
    """At 10 requests a minute (Graph's quota) ranges read at once all wait for the same quota and each costs a
    partial page: one chain reaches the floor. Without pacing (0) or with a quota above a page a second, the
    configured concurrency stands."""
    assert effective_concurrency(8, 10) == 1
    assert effective_concurrency(8, 60) == 1
    assert effective_concurrency(8, 0) == 8
    assert effective_concurrency(8, 600) == 8
