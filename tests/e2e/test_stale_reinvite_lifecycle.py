"""A re-invited guest goes on through its lifecycle, whatever the resend does to its dates.

Whether sending an invitation again moves the guest's externalUserStateChangeDateTime is not documented
(local/graph_sim/contract_queries.py, INVITATION_RESEND_DATES): the simulator plays both, and under each the
never-redeemed guest is warned and re-invited once, then disabled after the warning's grace period, not
"active again" because of the fresh stamp. The sweep runs through msgraph-sdk on the simulator's clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_queries import INVITATION_RESEND_DATES
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphGateway
from shared.services.stale import sweep_stale_guests
from tests.e2e.test_stale_sweep import STALE_ROLES, acted, deps_for
from tests.fakes.state import MemoryStateStore


@pytest.mark.parametrize("resend", sorted(INVITATION_RESEND_DATES))
async def test_a_re_invited_pending_guest_is_disabled_after_its_grace(
    graph_sim: GraphSimulator, tmp_path: Path, resend: str
) -> None:
    sim = graph_sim
    sim.set_graph_roles(STALE_ROLES)
    sim.invitation_resend_date = resend
    peter = sim.named("pending-old")
    stamped = sim.user(peter)["externalUserStateChangeDateTime"]
    state = MemoryStateStore(clock=sim.clock.now)
    config = GraphConfig(base_url=sim.base_url, max_retries=0)
    async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gateway:
        base = deps_for(sim, gateway, state, tmp_path)
        deps = replace(base, policy=replace(base.policy, reinvite_pending=True))
        warned = await sweep_stale_guests(deps)
        assert peter in await acted(tmp_path, warned, "warn")
        assert [i["invitedUserId"] for i in sim.invitations].count(peter) == 1
        moved = sim.user(peter)["externalUserStateChangeDateTime"] != stamped
        assert moved is (resend == "moved")

        sim.clock.advance(timedelta(days=1))
        quiet = await sweep_stale_guests(deps)  # in its warning grace: no reactivation, no second invitation
        assert peter not in await acted(tmp_path, quiet, "reactivate")
        assert [i["invitedUserId"] for i in sim.invitations].count(peter) == 1

        sim.clock.advance(timedelta(days=14))
        disabled = await sweep_stale_guests(deps)
        assert peter in await acted(tmp_path, disabled, "disable")
        assert sim.user(peter)["accountEnabled"] is False
