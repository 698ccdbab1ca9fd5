"""A sweep continued from a saved nextLink, through the real msgraph-sdk against the simulator, under both
readings of how long Graph honours a page token (local/graph_sim/contract_queries.py: PAGE_TOKEN_LIFETIMES):
followed as it is, or refused with 400 Directory_ExpiredPageToken and the range read again. Either way every
guest is counted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_queries import EXPIRED_PAGE_TOKEN, PAGE_TOKEN_LIFETIMES
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.adapters.reports import LocalFolderReportStore
from shared.adapters.templates import StaleTemplates
from shared.domain.stale import StalePolicy
from shared.ports.graph import GraphError, GuestPage
from shared.services.stale import StaleConfig, StaleDeps, StalePlan, resume_stale_sweeps, sweep_stale_guests
from tests.fakes.state import MemoryStateStore

PAGE = 40
"""Pages of 40 guests: the sample tenant's guests in several pages."""
QUOTA_SCALE = 60.0
"""The simulator's quotas and the gateway's pacing run this much faster (the signInActivity quota is 10 a minute)."""
LATER = timedelta(minutes=5)
"""The resumed invocation comes this much later: past the sweep's lease and past the 60 s token lifetime."""


class Killed(BaseException):
    """The process dies (not an Exception: nothing recovers from it)."""


class DiesAfter:
    """The gateway, in a process that dies after `pages` pages of the guest list."""

    def __init__(self, graph: GraphGateway, pages: int) -> None:
        self.graph = graph
        self.left = pages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    async def guest_pages(self, **kwargs: Any) -> AsyncIterator[GuestPage]:
        async for page in self.graph.guest_pages(**kwargs):
            if self.left == 0:
                raise Killed
            self.left -= 1
            yield page


def deps(sim: GraphSimulator, graph: Any, state: MemoryStateStore, reports: Path) -> StaleDeps:
    return StaleDeps(
        graph=graph,
        state=state,
        reports=LocalFolderReportStore(reports),
        templates=StaleTemplates(),
        policy=StalePolicy(exclude_domains=frozenset({"woodgrovebank.com"})),
        config=StaleConfig(dry_run=True, max_actions=1000, max_percent=100.0, scan_concurrency=1, lease_seconds=60),
        clock=sim.clock.now,
    )


def gateway(sim: GraphSimulator) -> GraphGateway:
    config = GraphConfig(base_url=sim.base_url, max_retries=3, page_size=PAGE, quota_time_scale=QUOTA_SCALE)
    return GraphGateway(LocalTokenCredential(token_url=sim.token_url), config)


async def uninterrupted(sim: GraphSimulator, tmp: Path) -> StalePlan:
    async with gateway(sim) as graph:
        return await sweep_stale_guests(deps(sim, graph, MemoryStateStore(clock=sim.clock.now), tmp / "whole"))


@pytest.mark.parametrize("lifetime", sorted(PAGE_TOKEN_LIFETIMES))
async def test_a_sweep_killed_mid_read_continues_later_under_either_page_token_lifetime(
    graph_sim: GraphSimulator, tmp_path: Path, lifetime: str
) -> None:
    sim = graph_sim
    sim.clock.freeze()
    sim.throttling.configure(time_scale=QUOTA_SCALE)  # quotas on, a minute lasting a second
    expected = await uninterrupted(sim, tmp_path)
    pages = -(-expected.guests_seen // PAGE)
    assert pages >= 4
    sim.page_token_lifetime = lifetime
    state = MemoryStateStore(clock=sim.clock.now)
    async with gateway(sim) as graph:
        with pytest.raises(Killed):
            await sweep_stale_guests(deps(sim, DiesAfter(graph, 2), state, tmp_path / "run"))
        sim.clock.advance(LATER)
        reads_before, throttled_before = sim.requests["GET /users"], sum(sim.throttling.throttled.values())
        (resumed,) = await resume_stale_sweeps(deps(sim, graph, state, tmp_path / "run"))
        # pages served: a request answered 429 (the quota, on a busy machine) is asked again, not a page read
        reads = sim.requests["GET /users"] - reads_before - (sum(sim.throttling.throttled.values()) - throttled_before)

    assert resumed.status == "dry-run" and resumed.slices == 2
    assert resumed.guests_seen == expected.guests_seen and resumed.counts == expected.counts
    if PAGE_TOKEN_LIFETIMES[lifetime].seconds is None:
        # followed the saved link: the two pages stored before are not read again (the one fetched ahead may be)
        assert pages - 2 <= reads <= pages - 1
    else:
        assert reads == 1 + pages  # the saved link refused (one request), then the range read from its start


async def test_the_simulator_refuses_an_expired_page_token_and_honours_a_fresh_one(graph_sim: GraphSimulator) -> None:
    sim = graph_sim
    sim.clock.freeze()
    sim.throttling.configure(time_scale=QUOTA_SCALE)
    sim.page_token_lifetime = "expires-60s"
    async with gateway(sim) as graph:
        first = await anext(graph.guest_pages())
        assert first.next is not None
        fresh = await anext(graph.guest_pages(resume=first.next))  # within the lifetime: honoured
        assert fresh.users and fresh.users[0].id != first.users[0].id
        sim.clock.advance(timedelta(seconds=61))
        with pytest.raises(GraphError) as refused:
            await anext(graph.guest_pages(resume=first.next))
    assert (refused.value.status, refused.value.code) == (400, EXPIRED_PAGE_TOKEN[0])


async def test_a_stored_link_to_another_host_is_never_followed(graph_sim: GraphSimulator) -> None:
    async with gateway(graph_sim) as graph:
        with pytest.raises(ValueError, match="outside"):
            await anext(graph.guest_pages(resume="https://attacker.example/v1.0/users?$skiptoken=x"))
