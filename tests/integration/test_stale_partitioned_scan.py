"""The partitioned guest scan against the simulator through the real msgraph-sdk: the same plan as one
nextLink chain, every guest exactly once, also when a guest was created exactly on a range boundary."""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.clock import iso_z
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.adapters.reports import LocalFolderReportStore
from shared.adapters.templates import StaleTemplates
from shared.domain.directory import CreatedRange, DirectoryUser
from shared.domain.stale import StalePolicy
from shared.ports.graph import GuestPage
from shared.services.stale import StaleConfig, StaleDeps, StalePlan, sweep_stale_guests
from shared.services.stale import scan as stale_scan
from tests.fakes.state import MemoryStateStore


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partition the 300-guest sample tenant as if it were a large one (pages of 100 expected, 2 extra requests
    allowed per page). The simulator cuts pages of 500 (user-list.md): one chain is one page."""
    monkeypatch.setattr(stale_scan, "EXTRA_REQUESTS_BUDGET", 2.0)
    monkeypatch.setattr(stale_scan, "SIGN_IN_ACTIVITY_PAGE", 100)


def deps(sim: GraphSimulator, graph: GraphGateway, tmp: Path, concurrency: int) -> StaleDeps:
    return StaleDeps(
        graph=graph,
        state=MemoryStateStore(clock=sim.clock.now),
        reports=LocalFolderReportStore(tmp),
        templates=StaleTemplates(),
        policy=StalePolicy(exclude_domains=frozenset({"woodgrovebank.com"})),
        config=StaleConfig(dry_run=True, max_actions=1000, max_percent=100.0, scan_concurrency=concurrency),
        clock=sim.clock.now,
    )


def summary(plan: Any) -> dict[str, Any]:
    body = plan.as_json()
    return {key: value for key, value in body.items() if key not in ("runId", "started", "reports", "slices")}


class Counting:
    """The gateway, counting the guests the sweep keeps from each read: a range's page counts only the guests
    the range owns (Graph's `le` bound returns the boundary's guests to two ranges; the sweep keeps one)."""

    def __init__(self, graph: GraphGateway) -> None:
        self.graph = graph
        self.seen: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    async def guest_pages(self, **kwargs: Any) -> AsyncIterator[GuestPage]:
        created = kwargs.get("created")
        async for page in self.graph.guest_pages(**kwargs):
            self.seen.update(u.id for u in page.users if created is None or created.owns(u))
            yield page

    async def get_users(self, user_ids: Any, *, with_sign_in_activity: bool) -> list[DirectoryUser]:
        users = await self.graph.get_users(user_ids, with_sign_in_activity=with_sign_in_activity)
        self.seen.update(u.id for u in users if u.created is None and u.user_type == "Guest")
        return users


async def plan_with(
    sim: GraphSimulator, tmp: Path, concurrency: int, retries: int = 0
) -> tuple[StalePlan, Counter[str]]:
    """A dry-run sweep reading `concurrency` ranges at once, and how many times it kept each guest."""
    config = GraphConfig(base_url=sim.base_url, max_retries=retries)
    async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as graph:
        counting = Counting(graph)
        plan = await sweep_stale_guests(deps(sim, counting, tmp / f"c{concurrency}", concurrency))  # type: ignore[arg-type]
    return plan, counting.seen


async def guests_read(sim: GraphSimulator, concurrency: int, retries: int = 0) -> Counter[str]:
    with tempfile.TemporaryDirectory() as tmp:
        _, seen = await plan_with(sim, Path(tmp), concurrency, retries)
    return seen


async def test_partitioned_plan_equals_the_sequential_plan(
    graph_sim: GraphSimulator, tmp_path: Path, small_ranges: None
) -> None:
    sim = graph_sim
    sequential, _ = await plan_with(sim, tmp_path, 1)
    lists_before, counts_before = sim.requests["GET /users"], sim.requests["GET /users/$count"]
    partitioned, _ = await plan_with(sim, tmp_path, 4)
    lists = sim.requests["GET /users"] - lists_before
    assert sequential.guests_seen > 250 and sequential.items_planned > 0
    assert summary(partitioned) == summary(sequential)
    assert lists > 1 + 1  # it really read several ranges (1 page in one chain), plus the span query
    assert sim.requests["GET /users/$count"] - counts_before == 1  # whether undated guests exist (and the ETA)


async def ranges(sim: GraphSimulator, concurrency: int) -> list[CreatedRange]:
    async with GraphGateway(
        LocalTokenCredential(token_url=sim.token_url), GraphConfig(base_url=sim.base_url, max_retries=0)
    ) as graph:
        span = await graph.guest_span()
    return stale_scan.plan_partitions(span.dated, span.earliest, sim.clock.now(), concurrency=concurrency)


async def test_every_guest_is_read_exactly_once_even_on_a_range_boundary(
    contoso_tenant: dict[str, Any], graph_sim_factory: Any, small_ranges: None
) -> None:
    tenant = copy.deepcopy(contoso_tenant)
    sim: GraphSimulator = graph_sim_factory(tenant)
    sim.clock.freeze()  # the ranges are cut up to "now": a tick between the two cuts below would move them
    guests = [u["id"] for u in tenant["users"] if u.get("userType") == "Guest"]
    boundaries = [p.high for p in await ranges(sim, 4) if p.high is not None]
    assert len(boundaries) >= 3
    on_boundary = guests[5 : 5 + len(boundaries)]
    with sim.store.lock:  # createdDateTime is read-only in Graph: set it the way a fixture would
        for user_id, boundary in zip(on_boundary, boundaries, strict=True):
            sim.store.users[user_id]["createdDateTime"] = iso_z(boundary)
        sim.store.bump(guests[5])
    assert [p.high for p in await ranges(sim, 4) if p.high is not None] == boundaries  # same cut

    seen = await guests_read(sim, concurrency=4)

    assert set(seen) == set(guests)
    assert max(seen.values()) == 1


async def test_a_refused_span_query_falls_back_to_one_chain(graph_sim: GraphSimulator, small_ranges: None) -> None:
    sim = graph_sim
    with sim.store.lock:
        guests = {uid for uid, u in sim.store.users.items() if u.get("userType") == "Guest"}
    sim.faults.fail_next(1, status=400, route="GET /users")  # the first list request: the span query

    seen = await guests_read(sim, concurrency=4)

    assert set(seen) == guests and max(seen.values()) == 1
    assert sim.requests["GET /users"] == 1 + 1  # the refused span query, then the one page of one chain
    assert sim.requests["BATCH GET /users/{id}"] == 0  # the chain read the undated guests too


async def test_a_429_on_one_range_holds_every_range_for_its_retry_after(
    contoso_tenant: dict[str, Any], small_ranges: None
) -> None:
    from bench.sim_process import TimedSimulator

    sim = TimedSimulator(copy.deepcopy(contoso_tenant)).start()
    try:
        with sim.store.lock:
            guests = {uid for uid, u in sim.store.users.items() if u.get("userType") == "Guest"}
        sim.faults.configure(rate_429=0.4, retry_after_s=1, routes=["GET /users"], seed=3)

        seen = await guests_read(sim, concurrency=8, retries=10)

        assert set(seen) == guests and max(seen.values()) == 1
        assert len(sim.throttles) >= 2
        assert sim.early_requests() == []  # nothing arrived while any Retry-After ran
    finally:
        sim.stop()


async def test_guests_without_a_created_date_are_read_once_by_id_when_the_span_counts_them(
    contoso_tenant: dict[str, Any], graph_sim_factory: Any, small_ranges: None
) -> None:
    sim: GraphSimulator = graph_sim_factory(copy.deepcopy(contoso_tenant))
    with sim.store.lock:
        guests = {uid for uid, u in sim.store.users.items() if u.get("userType") == "Guest"}
        undated = {uid for uid in guests if not sim.store.users[uid].get("createdDateTime")}
    assert sim.named("created-null") in undated

    seen = await guests_read(sim, concurrency=4)

    assert set(seen) == guests and max(seen.values()) == 1
    assert sim.requests["BATCH GET /users/{id}"] == len(undated)  # read whole, by id, in a $batch


async def test_without_undated_guests_the_scan_reads_nothing_by_id(
    contoso_tenant: dict[str, Any], graph_sim_factory: Any, small_ranges: None
) -> None:
    tenant = copy.deepcopy(contoso_tenant)
    for user in tenant["users"]:
        user["createdDateTime"] = user["createdDateTime"] or "2017-05-01T00:00:00Z"
    sim: GraphSimulator = graph_sim_factory(tenant)

    seen = await guests_read(sim, concurrency=4)

    assert len(seen) == sum(1 for u in tenant["users"] if u["userType"] == "Guest") and max(seen.values()) == 1
    assert sim.requests["BATCH GET /users/{id}"] == 0 and sim.requests["POST /$batch"] == 0
