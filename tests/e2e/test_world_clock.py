"""One notion of "now" in the local world: the host's timers and the app's flows read the simulator's clock, so
a test that jumps it moves every participant together (docs/local-development.md, "Dates")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from local.graph_sim.clock import parse_dt
from local.world import running_world
from shared.bootstrap import AppServices

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"
KEEPER = ("subscription_keeper", "graph_notifications")

pytestmark = pytest.mark.timeout(90)


def users_subscriptions(sim: object) -> list[dict[str, str]]:
    return [s for s in sim.subscriptions() if s["resource"].strip("/") == "users"]  # type: ignore[attr-defined]


async def test_a_jump_of_the_world_clock_moves_the_app_with_it(tmp_path: Path) -> None:
    async with running_world(FIXTURE, tmp_path, functions=KEEPER) as world:
        sim = world.sim
        assert await world.host.fire_timer("subscription_keeper")
        [first] = users_subscriptions(sim)
        # 40 days on: Graph has dropped the subscription. The keeper must ask for an expiry after the simulator's
        # now; on the wall clock it would ask for one 11 days in the simulator's past, and Graph would refuse it.
        jumped = sim.clock.advance(timedelta(days=40))
        assert users_subscriptions(sim) == []
        assert await world.host.fire_timer("subscription_keeper")
        [second] = users_subscriptions(sim)
        assert second["id"] != first["id"]
        lifetime = parse_dt(second["expirationDateTime"]) - jumped
        assert timedelta(days=28) < lifetime <= timedelta(minutes=41760)
        assert AppServices.current().clock() >= jumped  # the app reads the same clock


async def test_advancing_the_host_clock_moves_the_simulator_through_each_occurrence(tmp_path: Path) -> None:
    async with running_world(FIXTURE, tmp_path, functions=KEEPER, SUBSCRIPTION_SCHEDULE="0 0 */6 * * *") as world:
        sim = world.sim
        target = sim.clock.now() + timedelta(days=27)
        fired = await world.host.advance_clock(to=target)
        assert len(fired) >= 27 * 4 and {name for name, _ in fired} == {"subscription_keeper"}
        assert sim.clock.now() >= target
        # the keeper renewed within its window every time, on the simulator's clock: the subscription never lapsed
        [live] = users_subscriptions(sim)
        assert parse_dt(live["expirationDateTime"]) - sim.clock.now() > timedelta(days=25)
