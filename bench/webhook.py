"""Bench 2: the Graph webhook through the local host into the broker.

The real function_app serves POST /api/graph/notifications on the local functions host; only the webhook and
the subscription keeper run (the processor is off, so every accepted notification stays countable in the
queue). Two measurements:

- acknowledgement latency at a fixed offered load (open loop: request i is sent at t0 + i / rate whatever the
  answers do, and its latency counts from that planned moment, so a stall cannot hide itself);
- throughput: as many notifications as `concurrency` closed-loop senders get accepted per second.

Every notification has its own sequence number, so none may collapse: the queue must hold exactly as many
messages as notifications were answered 202.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Row
from local.world import RunningWorld, eventually, running_world

FIXTURE = Path(__file__).resolve().parents[1] / "local" / "fixtures" / "contoso.json"
P99_TARGET_MS = 50.0
"""Issue 16's target at 200 notifications/s (Graph itself counts an endpoint slow at 2,900 ms)."""
DRAIN_TIMEOUT_S = 120.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Notifier:
    """Builds genuine-looking change notifications for the world's live subscription."""

    def __init__(self, world: RunningWorld) -> None:
        (subscription,) = [s for s in world.sim.subscriptions() if s["resource"].strip("/").lower() == "users"]
        self.subscription_id = str(subscription["id"])
        self.client_state = world.settings["GRAPH_CLIENT_STATE"]
        self.tenant_id = str(world.sim.store.tenant.get("id", ""))
        with world.sim.store.lock:
            self.guests = [uid for uid, u in world.sim.store.users.items() if u.get("userType") == "Guest"]
        self.sequence = 0

    def next_body(self) -> bytes:
        self.sequence += 1
        user = self.guests[self.sequence % len(self.guests)]
        notification = {
            "subscriptionId": self.subscription_id,
            "subscriptionExpirationDateTime": "2099-01-01T00:00:00Z",
            "clientState": self.client_state,
            "changeType": "updated",
            "resource": f"Users/{user}",
            "tenantId": self.tenant_id,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.User",
                "@odata.id": f"Users/{user}",
                "id": user,
                "organizationId": self.tenant_id,
                "sequenceNumber": 10_000_000 + self.sequence,
            },
        }
        return json.dumps({"value": [notification]}).encode()


async def offered_load(world: RunningWorld, notifier: Notifier, rate: float, count: int) -> tuple[list[float], int]:
    """Latencies (ms) of `count` notifications offered at `rate`/s, and how many were answered 202."""
    import aiohttp

    latencies: list[float] = []
    accepted = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def send(body: bytes, planned: float) -> None:
            nonlocal accepted
            async with http.post(
                world.notification_url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                accepted += response.status == 202
            latencies.append((loop.time() - planned) * 1000)

        start = loop.time() + 0.1
        tasks = []
        for i in range(count):
            planned = start + i / rate
            await asyncio.sleep(max(0.0, planned - loop.time()))
            tasks.append(asyncio.create_task(send(notifier.next_body(), planned)))
        await asyncio.gather(*tasks)
    return latencies, accepted


async def throughput(world: RunningWorld, notifier: Notifier, seconds: float, concurrency: int) -> tuple[int, float]:
    import aiohttp

    accepted = 0
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + seconds

        async def sender() -> None:
            nonlocal accepted
            while time.monotonic() < deadline:
                async with http.post(
                    world.notification_url, data=notifier.next_body(), headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    accepted += response.status == 202

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return accepted, time.monotonic() - started


async def measure(rate: float, count: int, throughput_s: float, concurrency: int) -> list[Row]:
    from shared.domain.messages import GUEST_CHANGES_QUEUE

    with tempfile.TemporaryDirectory() as tmp:
        async with running_world(FIXTURE, Path(tmp), functions=["graph_notifications", "subscription_keeper"]) as world:
            if not await world.host.fire_timer("subscription_keeper"):
                raise RuntimeError("the subscription keeper failed: no /users subscription to notify for")
            notifier = Notifier(world)
            await offered_load(world, notifier, rate, min(count, 50))  # warm-up: first imports, connections
            await eventually(lambda: world.broker.queue_depth(GUEST_CHANGES_QUEUE) == notifier.sequence, 60)
            before = world.broker.queue_depth(GUEST_CHANGES_QUEUE)
            latencies, accepted = await offered_load(world, notifier, rate, count)
            queued = before + accepted
            landed = await eventually(lambda: world.broker.queue_depth(GUEST_CHANGES_QUEUE) == queued, DRAIN_TIMEOUT_S)
            lost = accepted - (world.broker.queue_depth(GUEST_CHANGES_QUEUE) - before)
            burst, elapsed = await throughput(world, notifier, throughput_s, concurrency)
            total = queued + burst
            burst_landed = await eventually(
                lambda: world.broker.queue_depth(GUEST_CHANGES_QUEUE) == total, DRAIN_TIMEOUT_S
            )
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    return [
        Row(
            "webhook",
            f"ack latency p50 / p99 at {rate:.0f} notifications/s offered ({count:,} sent)",
            f"{p50:.1f} / {p99:.1f} ms",
            f"p99 < {P99_TARGET_MS:.0f} ms",
            p99 < P99_TARGET_MS,
            f"max {max(latencies):.0f} ms; Graph counts an endpoint slow at 2,900 ms",
        ),
        Row(
            "webhook",
            "notifications answered 202 and found in the queue",
            f"{accepted:,} / {count:,}, lost {lost}",
            "none lost",
            accepted == count and lost == 0 and landed,
        ),
        Row(
            "webhook",
            f"throughput, {concurrency} senders for {throughput_s:.0f} s",
            f"{burst / elapsed:,.0f} notifications/s",
            "",
            burst_landed,
            f"{burst:,} accepted, all in the queue: {'yes' if burst_landed else 'NO'}",
        ),
    ]


def run(rate: float = 200.0, count: int = 2000, throughput_s: float = 5.0, concurrency: int = 32) -> list[Row]:
    return asyncio.run(measure(rate, count, throughput_s, concurrency))
