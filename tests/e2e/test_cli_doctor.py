"""`guestwarden doctor` on the local world: the Graph simulator (whose tokens carry the identity's granted
roles), the local Service Bus broker with the app's queues, and a SQLite state store, all through the real
SDKs. What an operator sees: every check green, or the failing one named with what to fix."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.graph_sim import GraphSimulator
from local.graph_sim.identity import GRAPH_APP_ROLES
from local.graph_sim.notifications import SIM_CREATOR_ID, Subscription
from local.servicebus_broker import LocalServiceBusBroker
from local.world import app_settings, free_port
from shared.bootstrap import build_state_store, settings_from_env
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.services.subscriptions import RECORD_KEY, RECORD_KIND
from shared.settings import Feature
from tests.fixtures.servicebus import BrokerFactory

pytestmark = pytest.mark.timeout(180)

CLIENT_STATE = "doctor-client-state-0123456789abcdef"


@dataclass
class World:
    sim: GraphSimulator
    broker: LocalServiceBusBroker
    env: dict[str, str]

    def doctor(self, *args: str, **env: str) -> tuple[Result, dict[str, Any]]:
        argv = ["doctor", "--tenant-sim", self.sim.base_url, "--json", *args]
        result = CliRunner().invoke(app, argv, env={**self.env, **env})
        body = json.loads(result.stdout) if result.stdout.strip() else {}
        return result, body


def by_name(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {check["check"]: check for check in body["checks"]}


def seed_subscription(sim: GraphSimulator, env: dict[str, str]) -> None:
    """A live /users subscription for our webhook, remembered in state: what `subscriptions ensure` leaves."""
    sub_id = str(uuid.uuid4())
    expires = max(datetime.now(UTC), sim.clock.now()) + timedelta(days=20)
    sim.notifications.add(
        Subscription(
            sub_id, "/users", ("updated", "deleted"), env["GRAPH_NOTIFICATION_URL"], None, CLIENT_STATE, expires
        )
    )

    async def remember() -> None:
        async with build_state_store(settings_from_env((Feature.STATE,), env)) as state:
            await state.put(RECORD_KIND, RECORD_KEY, {"id": sub_id, "expiresAt": expires.isoformat()}, etag=None)

    asyncio.run(remember())


def local_world(sim: GraphSimulator, broker: LocalServiceBusBroker, state_dir: Path) -> World:
    """The app settings of the local world (as `make demo` uses them) and a healthy subscription."""
    env = app_settings(
        graph_url=sim.base_url,
        servicebus=broker.connection_string,
        host_port=free_port(),
        state_path=state_dir / "state.db",
        function_key="doctor-key",
        client_state=CLIENT_STATE,
    )
    seed_subscription(sim, env)
    return World(sim, broker, env)


@pytest.fixture
def world(graph_sim: GraphSimulator, servicebus_broker_factory: BrokerFactory, tmp_path: Path) -> World:
    return local_world(
        graph_sim, servicebus_broker_factory(queues=(GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)), tmp_path
    )


def test_all_green_on_the_sample_tenant_with_the_local_broker(world: World) -> None:
    result, body = world.doctor()
    assert result.exit_code == 0, result.output
    checks = by_name(body)
    assert body["ok"] is True
    # the sample tenant's sign-in logs hold home-tenant risk blocks that no local risk policy explains: the posture
    # finding warns (a posture finding never fails the doctor)
    assert {name: c["status"] for name, c in checks.items() if c["status"] != "ok"} == {
        "posture: risk-based policies and guests": "warn"
    }
    expected = {"settings", "graph token", "graph reachable", "graph permissions", "entra id p1", "subscription"}
    posture = {"posture: entra id p1/p2", "posture: risk-based policies and guests"}
    assert expected | posture | {f"queue {GUEST_CHANGES_QUEUE}", f"queue {RISK_INCIDENTS_QUEUE}", "state store"} == set(
        checks
    )
    assert "AAD_PREMIUM" in checks["posture: entra id p1/p2"]["detail"]
    assert "app-only token for guestwarden" in checks["graph token"]["detail"]
    assert "from the token's roles claim" in checks["graph permissions"]["detail"]


def test_human_table_names_every_check(world: World) -> None:
    result = CliRunner().invoke(app, ["doctor", "--tenant-sim", world.sim.base_url], env=world.env)
    assert result.exit_code == 0, result.output
    assert "graph permissions" in result.stdout and f"queue {RISK_INCIDENTS_QUEUE}" in result.stdout
    assert "0 failed" in result.stdout


def test_missing_permission_is_named_with_the_flow_it_breaks_and_the_fix(world: World) -> None:
    revoke = GRAPH_APP_ROLES["User.RevokeSessions.All"][0]
    with world.sim.store.lock:
        world.sim.store.app_role_assignments[:] = [
            a for a in world.sim.store.app_role_assignments if a["appRoleId"] != revoke
        ]
    result, body = world.doctor()
    assert result.exit_code == 7, result.output
    check = by_name(body)["graph permissions"]
    assert check["status"] == "fail"
    assert "User.RevokeSessions.All" in check["detail"] and "4. stale sweep" in check["detail"]
    assert "guestwarden setup grant-permissions" in check["fix"]
    assert by_name(body)["queue guest-changes"]["status"] == "ok"  # one failure does not hide the rest

    # following the advice fixes it
    fixed = CliRunner().invoke(
        app, ["setup", "grant-permissions", "--tenant-sim", world.sim.base_url, "--identity", SIM_CREATOR_ID]
    )
    assert fixed.exit_code == 0, fixed.output
    result, body = world.doctor()
    assert result.exit_code == 0, result.output


def test_tenant_without_p1_fails_for_the_stale_sweep_only(world: World) -> None:
    world.sim.entra_id_p1 = False
    result, body = world.doctor()
    assert result.exit_code == 7, result.output
    check = by_name(body)["entra id p1"]
    assert check["status"] == "fail"
    assert "no Entra ID P1" in check["detail"] and "stale sweep" in check["detail"]
    assert "P1" in check["fix"]

    # the switch only makes Graph refuse signInActivity: subscribedSkus still lists P1, which the posture check reads
    assert by_name(body)["posture: entra id p1/p2"]["status"] == "ok"
    # without the stale sweep, the missing P1 is a warning, and the doctor passes
    result, body = world.doctor("--flows", "licensing,risk")
    assert result.exit_code == 0, result.output
    assert by_name(body)["entra id p1"]["status"] == "warn"
    assert not any(name.startswith("posture:") for name in by_name(body))  # the posture flow not asked for


def test_a_missing_queue_is_named(
    graph_sim: GraphSimulator, servicebus_broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = servicebus_broker_factory(queues=(GUEST_CHANGES_QUEUE,))  # no risk-incidents queue
    result, body = local_world(graph_sim, broker, tmp_path).doctor()
    assert result.exit_code == 7, result.output
    checks = by_name(body)
    assert checks[f"queue {GUEST_CHANGES_QUEUE}"]["status"] == "ok"
    assert checks[f"queue {RISK_INCIDENTS_QUEUE}"]["status"] == "fail"
    assert "Service Bus" in checks[f"queue {RISK_INCIDENTS_QUEUE}"]["fix"]


def test_bad_settings_are_a_failing_check_naming_the_setting(world: World) -> None:
    result, body = world.doctor(LICENSE_SKU="", GRAPH_PAGE_SIZE="0")
    assert result.exit_code == 7, result.output
    [check] = body["checks"]
    assert check["check"] == "settings" and check["status"] == "fail"
    assert "LICENSE_SKU" in check["detail"] and "GRAPH_PAGE_SIZE" in check["detail"]
