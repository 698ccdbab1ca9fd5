"""Fixtures the adapter tests share: the simulated Contoso tenant, and the real Graph gateway (msgraph-sdk)
connected to it. A test file that needs another configuration defines its own `sim` or `gateway`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from local.graph_sim import GraphSimulator
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"


@pytest.fixture
def sim() -> Iterator[GraphSimulator]:
    with GraphSimulator.from_fixture(FIXTURE).start() as simulator:
        yield simulator


@pytest.fixture
async def gateway(sim: GraphSimulator) -> AsyncIterator[GraphGateway]:
    config = GraphConfig(base_url=sim.base_url, max_retries=3, batch_max_rounds=3)
    async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gw:
        yield gw
