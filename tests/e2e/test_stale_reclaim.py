"""Licence reclaim end to end: the sweep through msgraph-sdk against the simulated tenant takes a disabled
guest's direct licence and licensing-group membership back (the seat is free again), and a restore gives both
back. The simulator keeps seats and licenseAssignmentStates as Graph documents them (direct: assignedByGroup
null)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from local.graph_sim import GraphSimulator
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.services.stale import restore_run, sweep_stale_guests
from tests.e2e.test_stale_sweep import STALE_ROLES, acted, deps_for
from tests.fakes.state import MemoryStateStore

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"


def skus(sim: GraphSimulator, user: str) -> set[str]:
    return {str(entry["skuId"]).lower() for entry in sim.user(user).get("assignedLicenses") or []}


def consumed(sim: GraphSimulator, sku_id: str) -> int:
    return int(sim.store.skus[sku_id]["consumedUnits"])


async def test_disable_takes_licences_back_and_restore_gives_them_back(
    graph_sim: GraphSimulator, tmp_path: Path
) -> None:
    sim = graph_sim
    sim.set_graph_roles(STALE_ROLES)
    tenant_hints = json.loads(FIXTURE.read_text())["hints"]
    group, sku = tenant_hints["licensingGroupId"], tenant_hints["guestSkuId"].lower()
    lars, sven = sim.named("stale-licensed"), sim.named("stale-all")  # a direct licence; none
    state = MemoryStateStore(clock=sim.clock.now)
    config = GraphConfig(base_url=sim.base_url, max_retries=0)
    async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gateway:
        assert await gateway.add_group_member(group, sven)  # group-based licensing gives Sven the guest SKU
        assert sku in skus(sim, lars) and sku in skus(sim, sven)
        base = deps_for(sim, gateway, state, tmp_path)
        deps = replace(base, policy=replace(base.policy, reclaim_licenses=True, licensing_group_id=group))

        await sweep_stale_guests(deps)  # warn
        sim.clock.advance(timedelta(days=15))
        before = consumed(sim, sku)
        disabled = await sweep_stale_guests(deps)
        assert {lars, sven} <= await acted(tmp_path, disabled, "disable")
        assert disabled.licences_to_reclaim >= 2
        assert sku not in skus(sim, lars) and sku not in skus(sim, sven)
        assert sven not in sim.store.groups[group]["members"]
        assert consumed(sim, sku) <= before - 2  # the seats are free again
        assert sim.requests["BATCH POST /users/{id}/assignLicense"] >= 1
        assert sim.requests["BATCH DELETE /groups/{id}/members/{memberId}/$ref"] >= 1

        outcomes = {o.user_id: o for o in await restore_run(disabled.run_id, deps)}
        assert outcomes[lars].status == "re-enabled" and outcomes[sven].status == "re-enabled"
        assert sku in skus(sim, lars) and sku in skus(sim, sven)
        assert sven in sim.store.groups[group]["members"]
        returns = [
            e async for e in state.query(sim.clock.now() - timedelta(days=1)) if e.action == "stale-licence-return"
        ]
        assert {(e.subject, e.outcome) for e in returns} >= {(lars, "done"), (sven, "done")}
