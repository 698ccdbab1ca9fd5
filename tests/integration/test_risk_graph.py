"""The risk flows' Graph reads through the real gateway against the simulator: sign-ins (with arrival lag),
findTenantInformationByTenantId, and the detection service over the fixture's named risk cases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.resources.signins import set_arrival_lag
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.services.risk_detection import DetectionDeps, detect_risk_incidents
from tests.fakes.publisher import InMemoryPublisher
from tests.fakes.state import MemoryStateStore

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())
NAMED: dict[str, str] = TENANT["named"]
FABRIKAM = next(p for p in TENANT["partnerTenants"] if p["defaultDomainName"] == "fabrikam.com")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def gateway(sim: GraphSimulator) -> AsyncIterator[GraphGateway]:
    async with GraphGateway(
        LocalTokenCredential(token_url=sim.token_url), GraphConfig(base_url=sim.base_url, max_retries=1)
    ) as gw:
        yield gw


async def test_find_tenant_information_names_a_partner_and_none_for_an_unknown_tenant(gateway: GraphGateway) -> None:
    info = await gateway.find_tenant_information(FABRIKAM["tenantId"])
    assert info is not None
    assert (info.display_name, info.default_domain_name) == ("Fabrikam, Inc.", "fabrikam.com")
    assert await gateway.find_tenant_information("00000000-0000-0000-0000-0000000000ff") is None


async def test_the_fixture_risk_cases_are_found_and_the_rest_ignored(
    sim: GraphSimulator, gateway: GraphGateway
) -> None:
    publisher = InMemoryPublisher()
    now = sim.clock.now()
    deps = DetectionDeps(
        graph=gateway,
        state=MemoryStateStore(clock=sim.clock.now),
        publisher=publisher,
        queue="risk-incidents",
        lookback=timedelta(hours=12),
        quiet=timedelta(hours=1),
        clock=lambda: now,
    )
    outcome = await detect_risk_incidents(deps)
    users = sorted(body["userId"] for body in publisher.bodies("risk-incidents"))
    # risk-53011 (two sign-ins 12 min apart: one incident), risk-530032, risk-ca-53003; not ca-nonrisk-53003,
    # wrong-password-50126, xtap-blocked-500212, locked-50053
    assert users == sorted([NAMED["risk-53011"], NAMED["risk-530032"], NAMED["risk-ca-53003"]])
    for reason in ("wrong-password", "cross-tenant-access-policy", "locked-or-malicious-ip"):
        assert outcome.ignored.get(reason, 0) >= 1
    assert outcome.ignored["conditional-access-without-risk"] == 1


async def test_sign_ins_arrive_late_when_the_simulator_says_so(sim: GraphSimulator, gateway: GraphGateway) -> None:
    set_arrival_lag(sim, timedelta(minutes=10))
    now = sim.clock.now()
    entry = dict(
        TENANT["signIns"][0], id="late-one", createdDateTime=(now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    sim.add_signin(entry)

    async def ids() -> set[str]:
        return {s.id async for page in gateway.iter_sign_in_pages(now - timedelta(minutes=30), now) for s in page}

    assert "late-one" not in await ids()
    sim.clock.advance(timedelta(minutes=8))
    assert "late-one" in await ids()
