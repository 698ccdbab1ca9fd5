"""The whole local world for the reliability suite, with the levers a fault test pulls: the Graph simulator (with
its fault injector), the Service Bus broker (restartable, keeping its messages like a namespace), the local
functions host (killable and restartable on the same port and state), and the partner ticket sinks.

Built from the same pieces as the end-to-end tests (local.world settings, the risk flow's sinks and sign-ins),
with distinctive secrets everywhere so a log scan can look for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

import function_app
from local.graph_sim import GraphSimulator
from local.host import LocalFunctionsHost
from local.servicebus_broker import LocalServiceBusBroker, QueueOptions
from local.world import app_settings, free_port
from shared.adapters.state.sqlite import SqliteStateStore
from shared.bootstrap import AppServices
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from tests.e2e.test_flow_risk import (
    HOME_RISK,
    NAMED,
    PARTNERS,
    SNOW_PASSWORD,
    SNOW_USER,
    TENANT,
    WEBHOOK_SECRET,
    Sinks,
    partner_directory,
    sign_in,
)

KEY = f"fn-key-{uuid.uuid4().hex}"
CLIENT_STATE = f"client-state-{uuid.uuid4().hex}"
SB_KEY = f"sbkey{uuid.uuid4().hex}"
BEARER = "local-simulator-token"  # what GRAPH_AUTH=local-token's credential issues
QUEUES = (GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)
SECRETS = {
    "client_state": CLIENT_STATE,
    "function_key": KEY,
    "servicebus_key": SB_KEY,
    "webhook_secret": WEBHOOK_SECRET,
    "servicenow_password": SNOW_PASSWORD,
    "bearer_token": BEARER,
}


def roomy_tenant(seats: int = 500) -> dict[str, Any]:
    """contoso.json with enough guest seats for every pending guest (the fixture keeps 3 free on purpose)."""
    tenant = copy.deepcopy(TENANT)
    for sku in tenant["subscribedSkus"]:
        sku["prepaidUnits"]["enabled"] = max(sku["prepaidUnits"]["enabled"], seats)
    return tenant


def pending_guests() -> list[str]:
    return [u["id"] for u in TENANT["users"] if u.get("externalUserState") == "PendingAcceptance"]


def risk_sign_ins(keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One home-risk block per guest (two for the first: the same incident), homes alternating between a
    partner with a webhook sink (Fabrikam) and ones on the default ServiceNow sink."""
    homes = [PARTNERS["fabrikam.com"], PARTNERS["adventure-works.com"], PARTNERS["wingtiptoys.com"]]
    entries = [sign_in(key, 5 + i, 53011, HOME_RISK, homes[i % len(homes)]) for i, key in enumerate(keys)]
    entries.append(sign_in(keys[0], 2, 53011, HOME_RISK, homes[0]))
    return entries


@dataclass
class FaultWorld:
    sim: GraphSimulator
    broker: LocalServiceBusBroker
    sinks: Sinks
    settings: dict[str, str]
    port: int
    state_path: Path
    host: LocalFunctionsHost | None = None
    hosts: list[LocalFunctionsHost] = field(default_factory=list)
    poison: dict[str, list[str]] = field(default_factory=dict)
    expired_leases: int = 0

    @property
    def live(self) -> LocalFunctionsHost:
        assert self.host is not None, "the host is down"
        return self.host

    async def start_host(self) -> LocalFunctionsHost:
        """A new worker process: fresh services, same settings, port, state and broker."""
        AppServices.reset()
        AppServices.use_clock(self.sim.clock.now)  # one clock for the world: the simulator's
        host = LocalFunctionsHost(function_app.build_app(), self.settings, port=self.port, clock=self.sim.clock)
        await host.start()
        self.hosts.append(host)
        self.host = host
        return host

    async def kill_host(self) -> None:
        host, self.host = self.live, None
        await host.kill()
        await AppServices.close_current()  # the process is gone: nothing of it survives
        AppServices.reset()
        self.expired_leases += self.expire_dead_leases()

    def expire_dead_leases(self) -> int:
        return expire_dead_leases(self.state_path, self.sim.clock.now())

    async def send_poison(self, queue: str, bodies: list[bytes]) -> None:
        client = ServiceBusClient.from_connection_string(self.settings["SERVICEBUS_CONNECTION"])
        async with client, client.get_queue_sender(queue) as sender:
            for index, body in enumerate(bodies):
                message_id = f"poison-{queue}-{index}"
                await sender.send_messages(ServiceBusMessage(body, message_id=message_id))
                self.poison.setdefault(queue, []).append(message_id)

    async def audit(self, action: str | None = None, subject: str | None = None) -> list[tuple[str, str, str]]:
        """(action, subject, outcome) of every audit entry of the last day."""
        async with SqliteStateStore(self.state_path) as state:
            since = self.sim.clock.now() - timedelta(days=1)
            return [(e.action, e.subject, e.outcome) async for e in state.query(since, action=action, subject=subject)]

    def licensed(self, user_id: str, sku: str) -> bool:
        return sku in {lic["skuId"] for lic in self.sim.user(user_id).get("assignedLicenses", [])}

    def drained(self) -> bool:
        """Nothing active or scheduled left on any queue (what remains is dead-lettered)."""
        return all((c := self.broker.queue_counts(q))["available"] + c["locked"] + c["scheduled"] == 0 for q in QUEUES)

    async def stop(self) -> None:
        """Stop everything; a part that hangs (a client on a dead connection) cannot hold the rest up."""
        for host in reversed(self.hosts):
            await _bounded(host.stop())
        self.broker.stop()
        self.sim.stop()
        await _bounded(self.sinks.stop())
        await _bounded(AppServices.close_current())
        AppServices.reset()


def expire_dead_leases(state_path: Path, now: datetime) -> int:
    """Time passes for a dead worker's ledger leases: in production each runs out LEASE_SECONDS (2 to 15
    minutes) after the crash; here at once, so a test does not wait minutes. Call it while nobody else is alive
    to hold one."""
    with contextlib.closing(sqlite3.connect(state_path)) as conn, conn:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return conn.execute("UPDATE ledger SET lease_expires_at = ? WHERE status = 'held'", (stamp,)).rowcount


def busy_world_settings(
    tmp_path: Path, sinks: Sinks, *, graph_url: str, servicebus: str, host_port: int, function_key: str, **extra: str
) -> dict[str, str]:
    """The app settings of a world where every flow is busy: risk over the last hour with the partners' sinks,
    a real-mode sweep with its caps lifted; state in tmp_path/state.db."""
    return app_settings(
        graph_url=graph_url,
        servicebus=servicebus,
        host_port=host_port,
        state_path=tmp_path / "state.db",
        function_key=function_key,
        client_state=CLIENT_STATE,
        GRAPH_MAX_RETRIES="6",
        RISK_LOOKBACK_MINUTES="60",
        RISK_QUIET_MINUTES="120",
        RISK_PARTNER_DIRECTORY=str(partner_directory(tmp_path / "partners.json", sinks)),
        RISK_TICKET_ATTEMPTS="3",
        E2E_WEBHOOK_SECRET=WEBHOOK_SECRET,
        E2E_SNOW_USER=SNOW_USER,
        E2E_SNOW_PASSWORD=SNOW_PASSWORD,
        STALE_DRY_RUN="false",
        STALE_MAX_ACTIONS="1000",
        STALE_MAX_PERCENT="100",
        STALE_EXCLUDE_GROUP_IDS=NAMED["group-exclusions"],
        STALE_REPORT_DIR=str(tmp_path / "reports"),
        **extra,
    )


async def _bounded(step: Awaitable[None], timeout_s: float = 60.0) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(step, timeout_s)


@pytest.fixture
async def fault_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FaultWorld]:
    """The local world with every secret distinctive; the host is started; all of it is stopped afterwards."""
    sinks = Sinks()
    await sinks.start()
    sim = GraphSimulator(roomy_tenant()).start()
    # 30 s locks, as in the local world and Azure's default 1 min order: with 5 s locks every invocation slowed by a
    # fault renewed its lock, and a renewal in flight when a receive error shut the SDK's handler down left
    # azure-servicebus spinning for good (docs/reliability.md). Messages of the killed host return 30 s later.
    options = QueueOptions(max_delivery_count=10, lock_duration_s=30)
    broker = LocalServiceBusBroker({q: options for q in QUEUES}).start()
    port = free_port()
    state = tmp_path / "state.db"
    servicebus = broker.connection_string.replace("SharedAccessKey=local", f"SharedAccessKey={SB_KEY}")
    settings = busy_world_settings(
        tmp_path, sinks, graph_url=sim.base_url, servicebus=servicebus, host_port=port, function_key=KEY
    )
    for name, value in settings.items():
        monkeypatch.setenv(name, value)  # app settings reach the worker as environment variables
    world = FaultWorld(sim, broker, sinks, settings, port, state)
    try:
        await world.start_host()
        yield world
    finally:
        await world.stop()


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:4000]
