"""`python -m bench.sim_process --tenant FILE`: the Graph simulator for the benches, in its own process.

Prints `ready <base url>`, then answers one JSON line per command read from stdin:
`faults` (FaultInjector.configure arguments), `throttling` (Throttling.configure arguments: the quotas),
`reset` (forget counters, quota windows and timeline), `stats` (requests per route, the 429s with the requests
that arrived while a Retry-After was running, and the quotas' 429s). Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from typing import Any

from local.graph_sim import GraphSimulator
from local.graph_sim.clock import iso_z
from local.graph_sim.messages import SimRequest, SimResponse

LATE_ARRIVAL_S = 0.2
"""A request the client sent before it could see the 429 may be read by this (busy, single-threaded) server a
little after the 429 went out: arrivals that close are not counted as early."""
EARLY_MARGIN_S = 0.05


class TimedSimulator(GraphSimulator):
    """Records when each top-level request arrived, and each 429 with its Retry-After."""

    def __init__(self, tenant: dict[str, Any], **clock: Any) -> None:
        super().__init__(tenant, **clock)
        self.arrivals: list[float] = []
        self.throttles: list[tuple[float, float]] = []

    async def dispatch(self, req: SimRequest) -> SimResponse:
        if req.in_batch:
            return await super().dispatch(req)
        self.arrivals.append(time.monotonic())
        response = await super().dispatch(req)
        if response.status == 429:
            self.throttles.append((time.monotonic(), float(response.headers.get("Retry-After", "0"))))
        return response

    def early_requests(self) -> list[float]:
        """When (ms after the 429 went out) requests arrived while its Retry-After was still running."""
        return [
            round((t - sent) * 1000, 1)
            for sent, wait in self.throttles
            for t in self.arrivals
            if sent + LATE_ARRIVAL_S < t < sent + wait - EARLY_MARGIN_S
        ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenant", required=True)
    args = parser.parse_args()
    sim = TimedSimulator.from_fixture(args.tenant).start()
    assert isinstance(sim, TimedSimulator)
    print(f"ready {sim.base_url}", flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                result = run(sim, command)
                print(json.dumps({"result": result}), flush=True)
            except Exception as exc:  # reported to the parent, which raises
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    finally:
        sim.stop()
    return 0


RISK_REASON = "User blocked due to risk on home tenant."


def add_signins(sim: TimedSimulator, count: int, minutes: float) -> None:
    """`count` sign-ins spread over the last `minutes` (a busy tenant's window), 1 in 100 blocked by home risk."""
    now = sim.clock.now()
    guests = [u for u in sim.store.users.values() if u.get("userType") == "Guest"]
    for i in range(count):
        user = guests[i % len(guests)]
        code = 53011 if i % 100 == 0 else 0
        sim.add_signin(
            {
                "id": f"bench-{i:07d}",
                "createdDateTime": iso_z(now - timedelta(minutes=minutes * (i + 0.5) / count)),
                "userId": user["id"],
                "userPrincipalName": user["userPrincipalName"],
                "appDisplayName": "Microsoft Teams",
                "status": {
                    "errorCode": code,
                    "failureReason": "User blocked due to risk on home tenant." if code else None,
                },
                "homeTenantId": "b7ccb739-6107-5f1c-9c79-0d0e7279ddfc",
                "resourceTenantId": sim.store.tenant.get("id"),
                "riskState": "none",
                "riskLevelDuringSignIn": "none",
                "conditionalAccessStatus": "notApplied",
                "appliedConditionalAccessPolicies": [],
            }
        )


def run(sim: TimedSimulator, command: dict[str, Any]) -> Any:
    name = command.pop("cmd")
    if name == "faults":
        sim.faults.configure(**command)
        return None
    if name == "throttling":
        sim.throttling.configure(**command)
        return None
    if name == "signins":
        add_signins(sim, int(command["count"]), float(command["minutes"]))
        return None
    if name == "reset":
        sim.throttling.reset()
        with sim._count_lock:
            sim.requests.clear()
        sim.arrivals.clear()
        sim.throttles.clear()
        return None
    if name == "stats":
        return {
            "requests": dict(sim.requests),
            "throttled": len(sim.throttles),
            "quota_throttled": sum(sim.throttling.throttled.values()),
            "early": sim.early_requests(),
        }
    raise ValueError(f"unknown command {name!r}")


if __name__ == "__main__":
    sys.exit(main())
