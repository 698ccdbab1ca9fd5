"""SIGKILL, for real: the functions host runs as its own process (`python -m local.host`) and is killed with
SIGKILL at random points while all four flows are busy, then started again, until everything is done.

Unlike the fault suite (which cancels the worker in-process, so `finally` blocks still run), nothing of the
killed process runs after the signal: its leases stay held until they run out, its Service Bus locks until they
expire, a claim it won may never be completed, an audit entry never written. The Graph simulator, the broker and
the ticket sinks live in this test process, so they (and the broker's queues) outlive every kill; state is one
SQLite file shared by the host's incarnations. The host keeps one fixed port across its lives (not `--port 0`):
Graph's subscription points at it. While no host is alive, time passes at once for the dead one's ledger leases
(up to 15 minutes in production; `expire_dead_leases`, as in the fault suite); its Service Bus locks (10 s here)
run out for real.

The kill points are random but replayable: each kill waits for a seeded number of further Graph requests (the
world's progress), so `GUESTWARDEN_KILL_SEED=<seed>` replays a failing run (the seed is printed), and
`GUESTWARDEN_KILLS` (default 4) sets how many kills a run makes, to keep it inside CI's time.

At the end: every licence assigned once, every notice and ticket at most once and none silently lost (an
`uncertain` notice is audited and shown by `guestwarden blocked`), every sweep action done once and audited, the
sweep run finished, and no queue message lost (each completed, or dead-lettered with a reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.servicebus_broker import LocalServiceBusBroker, QueueOptions
from local.world import free_port
from shared.adapters.state.sqlite import SqliteStateStore
from shared.services.risk_report import blocked_incidents
from shared.services.stale import current_run
from tests.e2e.test_flow_risk import NAMED, Sinks
from tests.reliability.fault_world import (
    QUEUES,
    busy_world_settings,
    expire_dead_leases,
    pending_guests,
    risk_sign_ins,
    roomy_tenant,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SKU = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"  # AAD_PREMIUM, the guest SKU (contoso.json hints.guestSkuId)
RISKY = ("risk-53011", "risk-530032", "accepted-licensed", "accepted-unlicensed", "stale-licensed", "msa-guest")
KEY = "fn-key-real-kill"
KILLS = int(os.environ.get("GUESTWARDEN_KILLS", "4"))
LEASE_S = 10
"""STALE_SWEEP_LEASE_SECONDS: a run whose host was killed is continued this long after its last sign of life."""
QUOTA_SCALE = 60.0
"""The simulator's quotas run this much faster (and the app paces to match): a sweep of a few seconds."""


@dataclass
class HostProcess:
    """The functions host as a child process, and the log of each of its lives."""

    settings_file: Path
    port: int
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    lives: int = 0
    kills: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.lives += 1
        log = (self.logs / f"host-{self.lives}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.host", "--settings", str(self.settings_file), "--port", str(self.port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "STALE_", "STATE_"))},
        )

    def kill(self, why: str) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills.append(why)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        path = self.logs / f"host-{self.lives}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def ready(self, client: httpx.AsyncClient) -> bool:
        """The host answers Graph's validation handshake (what Graph checks first)."""
        with contextlib.suppress(httpx.HTTPError):
            url = f"http://127.0.0.1:{self.port}/api/graph/notifications?code={KEY}&validationToken=up"
            return (await client.post(url)).text == "up"
        return False

    async def invoke(self, client: httpx.AsyncClient, function: str) -> None:
        """Core Tools' admin call: run a timer function now."""
        url = f"http://127.0.0.1:{self.port}/admin/functions/{function}"
        answer = await client.post(url, headers={"x-functions-key": KEY}, json={"input": ""})
        assert answer.status_code == 202, (function, answer.status_code)


@dataclass
class World:
    sim: GraphSimulator
    broker: LocalServiceBusBroker
    sinks: Sinks
    host: HostProcess
    state_path: Path

    def expire_dead_leases(self) -> int:
        """Time passes for the killed host's ledger leases (nobody else is alive to hold one)."""
        with contextlib.closing(sqlite3.connect(self.state_path)) as conn, conn:
            now = self.sim.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return conn.execute("UPDATE ledger SET lease_expires_at = ? WHERE status = 'held'", (now,)).rowcount

    def requests(self) -> int:
        return sum(self.sim.requests.values())

    def licensed(self, user_id: str) -> bool:
        return SKU in {lic["skuId"] for lic in self.sim.user(user_id).get("assignedLicenses", [])}

    def tickets(self) -> set[str]:
        """Incident ids the partners' ticket systems got (a repeated POST carries the same id)."""
        return {t["incidentId"] for t in self.sinks.webhook} | {t["correlation_id"] for t in self.sinks.servicenow}

    def progressed(self, past: int) -> bool:
        """The world made `past` Graph requests, or the host died on its own."""
        return self.requests() >= past or (self.host.proc is not None and self.host.proc.poll() is not None)

    def drained(self) -> bool:
        return all((c := self.broker.queue_counts(q))["available"] + c["locked"] + c["scheduled"] == 0 for q in QUEUES)

    async def run_slices(self) -> list[int]:
        """How many host lives each finished sweep run took (its `stale-run` audit entry)."""
        async with SqliteStateStore(self.state_path) as state:
            since = self.sim.clock.now() - timedelta(days=1)
            return [int(dict(e.evidence).get("slices", 0)) async for e in state.query(since, action="stale-run")]  # type: ignore[call-overload]

    async def audit(self, action: str | None = None) -> list[tuple[str, str, str]]:
        async with SqliteStateStore(self.state_path) as state:
            since = self.sim.clock.now() - timedelta(days=1)
            return [(e.action, e.subject, e.outcome) async for e in state.query(since, action=action)]

    def ledger_done(self, prefix: str) -> set[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(self.state_path)) as conn:
            rows = conn.execute("SELECT action, subject FROM ledger WHERE status = 'done' AND action LIKE ?", (prefix,))
            return {(str(a), str(s)) for a, s in rows}


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    sinks = Sinks()
    await sinks.start()
    sim = GraphSimulator(roomy_tenant()).start()
    sim.throttling.time_scale = QUOTA_SCALE
    sim.faults.configure(latency_ms=15)  # a sweep long enough for kills to land in it
    sim.notifications.configure(retry_delays_s=(0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0))
    options = QueueOptions(max_delivery_count=10, lock_duration_s=10)
    broker = LocalServiceBusBroker({q: options for q in QUEUES}).start()
    port = free_port()
    settings = busy_world_settings(
        tmp_path,
        sinks,
        graph_url=sim.base_url,
        servicebus=broker.connection_string,
        host_port=port,
        function_key=KEY,
        GRAPH_PAGE_SIZE="20",
        GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE=str(int(10 * QUOTA_SCALE)),
        STALE_SCAN_CONCURRENCY="1",
        STALE_SWEEP_SCHEDULE="0 0 0 1 1 *",  # started by hand below, not by the clock
        STALE_RESUME_SCHEDULE="*/2 * * * * *",
        STALE_SWEEP_LEASE_SECONDS=str(LEASE_S),
    )
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": settings}))
    host = HostProcess(settings_file, port, tmp_path)
    world = World(sim, broker, sinks, host, tmp_path / "state.db")
    try:
        yield world
    finally:
        host.stop()
        broker.stop()
        sim.stop()
        await sinks.stop()


async def until(world: World, condition: Any, timeout_s: float, what: str) -> None:
    """`eventually`, failing with what a reader needs: the queues and the end of the live host's log."""
    try:
        await eventually(condition, timeout_s, what)
    except AssertionError as exc:
        queues = {q: world.broker.queue_counts(q) for q in QUEUES}
        raise AssertionError(f"{exc}; kills {world.host.kills}; queues {queues}\n{world.host.log_tail()}") from None


async def start_host(world: World, client: httpx.AsyncClient) -> None:
    world.host.start()
    await eventually(
        lambda: world.host.ready(client), 60, f"host life {world.host.lives} to answer\n{world.host.log_tail()}"
    )


async def make_sure_the_sweep_runs(world: World, client: httpx.AsyncClient) -> None:
    """The one step that starts the sweep and keeps it going across kills; called once the flows are busy and
    after every restart. The nightly timer's work, started by hand; after a kill the resume timer
    (`stale_sweep_resume`, every 2 s here) continues the same run, so only a kill before the run was even
    recorded needs the timer again (in Azure: the next night)."""
    if not await sweep_finished(world) and not await sweep_recorded(world):
        await world.host.invoke(client, "stale_sweep")


async def sweep_recorded(world: World) -> bool:
    async with SqliteStateStore(world.state_path) as state:
        return await current_run(state, dry_run=False) is not None


async def sweep_finished(world: World) -> bool:
    return any(outcome == "applied" for _, _, outcome in await world.audit("stale-run"))


async def test_sigkill_at_random_points_loses_and_repeats_nothing(world: World) -> None:
    seed = int(os.environ.get("GUESTWARDEN_KILL_SEED") or random.randrange(1_000_000))
    print(f"real-kill seed: {seed} (GUESTWARDEN_KILL_SEED={seed} replays it), kills: {KILLS}")
    rng = random.Random(seed)
    sim = world.sim
    guests = pending_guests()
    async with httpx.AsyncClient(timeout=10) as client:
        await start_host(world, client)
        await world.host.invoke(client, "subscription_keeper")
        await eventually(
            lambda: any(s["resource"].strip("/") == "users" for s in sim.subscriptions()), 30, "a subscription"
        )

        # all four flows get busy: guests accept (licences), risky sign-ins (notices, tickets), a sweep
        for guest in guests:
            sim.redeem_invitation(guest)
        for entry in risk_sign_ins(RISKY):
            sim.add_signin(entry)
        await world.host.invoke(client, "risk_poller")
        await make_sure_the_sweep_runs(world, client)

        for kill in range(KILLS):
            # a random point: after a seeded number of further Graph requests (the world's progress)
            at = world.requests() + rng.randint(3, 60)
            await eventually(lambda: world.progressed(at), 120, "progress")  # noqa: B023
            world.host.kill(f"kill {kill + 1} after {world.requests()} Graph requests")
            # the killed host's ledger leases run out at once (the sweep's own run lease is left to run out)
            expire_dead_leases(world.state_path, sim.clock.now())
            await start_host(world, client)
            # what a restarted app does anyway on its timers: catch up on missed changes and sign-ins
            await world.host.invoke(client, "delta_backstop")
            await world.host.invoke(client, "risk_poller")
            await make_sure_the_sweep_runs(world, client)

        # -- the last life runs everything to the end ----------------------------------------------------------
        await until(world, lambda: all(world.licensed(g) for g in guests), 180, "every redeemed guest's licence")
        await until(world, lambda: len(world.tickets()) >= len(RISKY), 120, "a ticket per incident")
        await until(world, lambda: sweep_finished(world), 180, "the sweep to finish (continued by the resume timer)")
        await until(world, world.drained, 120, "every queue drained")
    world.host.stop()

    failures: list[str] = []
    audit = await world.audit()
    by_action: dict[str, Counter[str]] = {}
    for action, subject, outcome in audit:
        if outcome != "failed":  # a refused attempt, retried later
            by_action.setdefault(action, Counter())[subject] += 1
    # licensing: once per guest, in the tenant and in the audit log
    for guest in guests:
        skus = [lic["skuId"] for lic in sim.user(guest).get("assignedLicenses", [])]
        if by_action.get("assign-license", Counter())[guest] != 1 or skus.count(SKU) != 1:
            failures.append(f"licensing {guest}: audited {by_action.get('assign-license', Counter())[guest]}, {skus}")
    # risk: one incident, at most one notice mail (sent or audited uncertain), one ticket per partner
    notices = {s: o for a, s, o in audit if a == "risk-notify" and o != "failed"}
    for key in RISKY:
        uid = NAMED[key]
        address = sim.user(uid).get("mail")
        mails = [
            m
            for m in sim.outbox
            if address in {r["emailAddress"]["address"] for r in m["message"].get("toRecipients", [])}
        ]
        if (
            notices.get(uid) not in ("sent", "uncertain")
            or len(mails) > 1
            or (notices.get(uid) == "sent" and not mails)
        ):
            failures.append(f"risk {key}: notice {notices.get(uid)}, {len(mails)} mail(s)")
        if by_action.get("risk-incident", Counter())[uid] != 1:
            failures.append(f"risk {key}: {by_action.get('risk-incident', Counter())[uid]} incidents")
    # an uncertain notice is surfaced: the admins' `guestwarden blocked` view shows it
    async with SqliteStateStore(world.state_path) as state:
        shown = {row.user_id: row.notice for row in await blocked_incidents(state, sim.clock.now() - timedelta(days=1))}
    for uid, outcome in notices.items():
        if outcome == "uncertain" and shown.get(uid) != "uncertain":
            failures.append(f"risk {uid}: uncertain notice not shown by `guestwarden blocked` ({shown.get(uid)})")
    sink_ids = world.tickets()
    if len(sink_ids) != len(RISKY):
        failures.append(f"tickets at the sinks: {sorted(sink_ids)}")
    # stale: every action the ledger says was done is audited exactly once, and vice versa
    stale_audited = Counter(
        (a, s) for a, s, o in audit if a.startswith("stale-") and a != "stale-run" and o in ("done", "uncertain")
    )
    if any(n != 1 for n in stale_audited.values()):
        failures.append(f"stale actions audited more than once: {[k for k, n in stale_audited.items() if n != 1]}")
    if set(stale_audited) != world.ledger_done("stale-%"):
        failures.append(f"stale ledger vs audit: {set(stale_audited) ^ world.ledger_done('stale-%')}")
    if not stale_audited:
        failures.append("the sweep did nothing")
    # queues: no message lost: every message sent was completed or dead-lettered with a reason (the checks
    # above already show its work was done), nothing left active or scheduled (drained)
    for queue in QUEUES:
        s = world.broker.stats[queue]
        dead = world.broker.dead_letters(queue)
        if s["sent"] != s["completed"] + len(dead) or any(not d["reason"] for d in dead):
            failures.append(f"{queue}: message lost: {s} {dead}")
    assert not failures, f"seed {seed}; kills {world.host.kills}\n" + "\n".join(failures)
    print(
        "real-kill figures:",
        json.dumps(
            {
                "seed": seed,
                "kills": world.host.kills,
                "guests_licensed": len(guests),
                "incidents": len(RISKY),
                "notices_uncertain": sum(1 for o in notices.values() if o == "uncertain"),
                "stale_actions": len(stale_audited),
                "stale_runs": [o for a, _, o in audit if a == "stale-run"],
                "stale_run_slices": await world.run_slices(),
                "graph_requests": world.requests(),
                "queue_messages": {q: world.broker.stats[q]["sent"] for q in QUEUES},
            }
        ),
    )
