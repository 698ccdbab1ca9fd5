"""Bench 1: the stale sweep at scale, against the strict Graph simulator (quotas on) in its own process.

Graph's quotas decide how fast a sweep can read (docs/graph-gateway.md, "Quotas"): at 10 requests reading
signInActivity a minute and 500 guests a page, 100,000 guests need 20 minutes. So the bench runs the whole world
QUOTA_SCALE times faster: the simulator's quota windows, the gateway's pacing and the added latency are all
divided by it, and the figure is the ratio of the plan's wall time to the floor the quota allows (the same ratio
at any scale).

For each tenant size: (a) the plan (dry run) with 250 ms (scaled) added to every Graph request: wall time
against the quota floor, 429s, peak RSS of the sweeping process; (b) a 429 storm on the guest list: requests
sent while a Retry-After ran; (c) the applied sweep (no added latency): Graph requests against the floor,
ceil(guests / 500) pages plus ceil(sub-requests / 20) batches. The sweep runs in a child process
(`python -m bench.sweep --child`) so its RSS is guestwarden's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, SimProcess, run_json, tenant_file

PAGE = 500  # user-list.md: at most 500 a page with signInActivity
BATCH = 20
LATENCY_MS = 250
RSS_TARGET_MB = 200.0
RSS_RATIO_TARGET = 1.2
FLOOR_RATIO_TARGET = 1.05
TIME_FLOOR_RATIO_TARGET = 1.10
THROTTLED_SHARE_TARGET = 0.01
QUOTA_SCALE = 20.0
"""The world runs this many times faster in the bench: a quota minute lasts 3 s."""
ACTIVITY_PER_MINUTE = 10  # Graph's signInActivity quota (contract_throttling.SIGN_IN_ACTIVITY)
CHILD_TIMEOUT_S = 900


def quota_floor_s(pages: int, scale: float = QUOTA_SCALE) -> float:
    """The least time `pages` requests reading signInActivity can take under the quota (sliding window of a
    minute, 10 in it): the first 10 at once, then 10 a minute."""
    return max(0, math.ceil(pages / ACTIVITY_PER_MINUTE) - 1) * 60.0 / scale


async def sweep(
    url: str,
    *,
    concurrency: int,
    apply: bool,
    scale: float = QUOTA_SCALE,
    folder: str | None = None,
    lease_s: int = 300,
) -> dict[str, Any]:
    """One sweep in this process; `folder` keeps its state and reports (a second process continues a run the
    first was killed in)."""
    if folder is not None:
        return await _sweep_in(Path(folder), url, concurrency=concurrency, apply=apply, scale=scale, lease_s=lease_s)
    with tempfile.TemporaryDirectory() as reports:
        return await _sweep_in(Path(reports), url, concurrency=concurrency, apply=apply, scale=scale, lease_s=lease_s)


async def _sweep_in(
    reports: Path, url: str, *, concurrency: int, apply: bool, scale: float, lease_s: int
) -> dict[str, Any]:
    from shared.adapters.credentials import LocalTokenCredential, local_token_url
    from shared.adapters.graph import GraphConfig, GraphGateway
    from shared.adapters.reports import LocalFolderReportStore
    from shared.adapters.state.sqlite import SqliteStateStore
    from shared.adapters.templates import StaleTemplates
    from shared.domain.stale import StalePolicy
    from shared.ports.clock import utc_now
    from shared.services.stale import StaleConfig, StaleDeps, sweep_stale_guests

    async with GraphGateway(
        LocalTokenCredential(token_url=local_token_url(url)),
        GraphConfig(base_url=url, max_retries=10, quota_time_scale=scale),
    ) as graph:
        # The simulator process rebased the tenant onto its start and ticks with real time: the wall clock is
        # its clock too (docs/local-development.md, "Dates").
        deps = StaleDeps(
            graph=graph,
            state=SqliteStateStore(Path(reports) / "state.db", clock=utc_now),
            reports=LocalFolderReportStore(Path(reports)),
            templates=StaleTemplates(),
            policy=StalePolicy(),
            config=StaleConfig(
                dry_run=not apply,
                max_actions=100_000,
                max_percent=100.0,
                scan_concurrency=concurrency,
                sign_in_activity_per_minute=ACTIVITY_PER_MINUTE,
                lease_seconds=lease_s,
            ),
            clock=utc_now,
        )
        early = watch_retry_after(graph)
        started = time.perf_counter()
        plan = await sweep_stale_guests(deps)
        wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "status": plan.status,
        "guests": plan.guests_seen,
        "acting": plan.acting,
        "counts": dict(plan.counts),
        "not_done": sum(n for outcome, n in plan.outcomes.items() if outcome not in ("done", "would-do")),
        "run_id": plan.run_id,
        "slices": plan.slices,
        "early": early(),
    }


def watch_retry_after(graph: Any) -> Callable[[], int]:
    """Client side: count requests sent while a received 429's Retry-After was still running. The hooks go
    after the gateway's own (which holds requests, and notes 429s), so they see what really goes out."""
    sent: list[float] = []
    throttled: list[tuple[float, float]] = []

    async def on_request(request: Any) -> None:
        sent.append(time.monotonic())

    async def on_response(response: Any) -> None:
        if response.status_code == 429:
            throttled.append((time.monotonic(), float(response.headers.get("Retry-After", "0"))))

    http = graph.client and graph._http  # the gateway's httpx client (built on first use)
    hooks = http.event_hooks
    http.event_hooks = {
        "request": [*hooks.get("request", []), on_request],
        "response": [*hooks.get("response", []), on_response],
    }
    return lambda: sum(1 for at, wait in throttled for t in sent if at < t < at + wait - 0.01)


def run_child(url: str, *, concurrency: int, apply: bool) -> dict[str, Any]:
    args = ["-m", "bench.sweep", "--child", url, "--concurrency", str(concurrency), *(["--apply"] if apply else [])]
    return run_json("the sweep child", [*args, "--scale", str(QUOTA_SCALE)], timeout_s=CHILD_TIMEOUT_S)


def floor_of(guests: int, requests: dict[str, int]) -> tuple[int, int, int]:
    """(requests used, floor, sub-requests in batches)."""
    sub = sum(n for key, n in requests.items() if key.startswith("BATCH "))
    used = sum(n for key, n in requests.items() if not key.startswith("BATCH "))
    return used, math.ceil(guests / PAGE) + math.ceil(sub / BATCH), sub


def within_floor(used: int, floor: int) -> bool:
    """At most 5% over the floor; a tenant too small for that pays one fixed extra request (the span query)."""
    return used <= max(FLOOR_RATIO_TARGET * floor, floor + 1)


def bench_size(guests: int, *, latency_ms: int, storm: float, concurrency: int) -> list[Row]:
    rows: list[Row] = []
    name = f"sweep {guests:,}"
    with SimProcess(tenant_file(guests)) as sim:
        sim.call("throttling", time_scale=QUOTA_SCALE)
        scaled_latency = round(latency_ms / QUOTA_SCALE)
        sim.call("faults", latency_ms=scaled_latency)
        sim.call("reset")
        plan = run_child(sim.base_url, concurrency=concurrency, apply=False)
        stats = sim.call("stats")
        reads = sum(n for key, n in stats["requests"].items() if key == "GET /users")
        floor = quota_floor_s(math.ceil(plan["guests"] / PAGE))
        total = sum(stats["requests"].values())
        rows.append(
            Row(
                name,
                f"plan wall time / quota floor ({latency_ms} ms a request and the quota, {QUOTA_SCALE:g}x faster; "
                f"one chain: the quota, not latency, is the limit)",
                f"{plan['wall_s'] / floor:.2f} ({plan['wall_s']:.1f} s / {floor:.1f} s)" if floor else "-",
                f"<= {TIME_FLOOR_RATIO_TARGET}" if floor else "",
                plan["wall_s"] <= TIME_FLOOR_RATIO_TARGET * floor if floor else None,
                f"{reads} list requests; real time {plan['wall_s'] * QUOTA_SCALE / 60:.1f} min (the quota: "
                f"{ACTIVITY_PER_MINUTE} signInActivity requests a minute)",
            )
        )
        rows.append(
            Row(
                name,
                "429s answered / Graph requests (plan)",
                f"{stats['quota_throttled']} / {total:,}",
                f"< {THROTTLED_SHARE_TARGET:.0%}",
                stats["quota_throttled"] < THROTTLED_SHARE_TARGET * total,
                "the gateway paces itself to the quota instead of provoking 429s",
            )
        )
        rows.append(
            Row(
                name,
                "peak RSS of the sweeping process (plan)",
                f"{plan['rss_mb']:.0f} MB",
                f"< {RSS_TARGET_MB:.0f} MB",
                plan["rss_mb"] < RSS_TARGET_MB,
                f"{plan['guests']:,} guests, {plan['acting']:,} to act on",
            )
        )
        if storm > 0:
            sim.call("faults", rate_429=storm, retry_after_s=1, routes=["GET /users"], seed=7)
            sim.call("reset")
            stormy = run_child(sim.base_url, concurrency=concurrency, apply=False)
            stats = sim.call("stats")
            rows.append(
                Row(
                    name,
                    f"429 storm ({storm:.0%} of list requests, Retry-After 1 s): "
                    "requests the sweep sent during a Retry-After",
                    str(stormy["early"]),
                    "0",
                    stormy["early"] == 0 and stats["throttled"] > 0 and stormy["guests"] == plan["guests"],
                    f"{stats['throttled']} throttled; every guest still read ({stormy['guests']:,}); the simulator "
                    f"saw {len(stats['early'])} arrival(s) > 200 ms into a Retry-After (requests sent before the "
                    "429 reached the client, read late by a busy server)",
                )
            )
        sim.call("faults")
        sim.call("reset")
        applied = run_child(sim.base_url, concurrency=concurrency, apply=True)
        stats = sim.call("stats")
        used, floor, sub = floor_of(applied["guests"], stats["requests"])
        rows.append(
            Row(
                name,
                "Graph requests of the applied sweep / floor",
                f"{used / floor:.3f} ({used:,} / {floor:,})",
                f"<= {FLOOR_RATIO_TARGET} (or floor + 1)",
                within_floor(used, floor) and applied["not_done"] == 0,
                f"{applied['acting']:,} actions ({sub:,} sub-requests), status {applied['status']}, "
                f"{applied['not_done']} not done",
            )
        )
        rows.append(
            Row(
                name,
                "peak RSS of the sweeping process (applied, reports written)",
                f"{applied['rss_mb']:.0f} MB",
                f"< {RSS_TARGET_MB:.0f} MB",
                applied["rss_mb"] < RSS_TARGET_MB,
                f"{applied['acting']:,} actions, each part of the plan read back and its outcomes written",
            )
        )
    return rows


RESUME_LEASE_S = 3
"""STALE_SWEEP_LEASE_SECONDS in the resume bench (300 in Azure): how long a killed run waits for its lease."""


def bench_resume(guests: int, *, concurrency: int) -> list[Row]:
    """SIGKILL the sweeping process halfway through reading, start a new one once the lease is out, and time
    how long the new process takes to read on (process start, imports, token, taking the run over)."""
    name = f"sweep {guests:,}"
    pages = math.ceil(guests / PAGE)
    with SimProcess(tenant_file(guests)) as sim, tempfile.TemporaryDirectory() as folder:
        sim.call("throttling", time_scale=QUOTA_SCALE)
        sim.call("reset")
        args = [sys.executable, "-m", "bench.sweep", "--child", sim.base_url, "--concurrency", str(concurrency)]
        args += ["--scale", str(QUOTA_SCALE), "--folder", folder, "--lease", str(RESUME_LEASE_S)]

        def reads() -> int:
            return int(sim.call("stats")["requests"].get("GET /users", 0))

        first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: reads() >= pages // 2, timeout_s=CHILD_TIMEOUT_S)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at, read_before = time.monotonic(), reads()
        time.sleep(max(0.0, killed_at + RESUME_LEASE_S - time.monotonic()))  # the dead process's lease runs out
        restart = time.monotonic()
        second = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wait_for(lambda: reads() > read_before, timeout_s=CHILD_TIMEOUT_S)
        first_page = time.monotonic() - restart
        out, _ = second.communicate(timeout=CHILD_TIMEOUT_S)
        result = json.loads(out.strip().splitlines()[-1])
        again = reads() - pages
    ok = result["guests"] == guests and result["slices"] == 2 and again <= 2  # in hand and fetched ahead
    return [
        Row(
            name,
            "resume after SIGKILL mid-sweep: new process start -> reading on",
            f"{first_page:.2f} s",
            "",
            ok,
            f"killed after {read_before} of {pages} pages; {again} page(s) read again; the resumed run read "
            f"{result['guests']:,} guests in {result['slices']} slices, status {result['status']}. Add the lease "
            f"(STALE_SWEEP_LEASE_SECONDS: {RESUME_LEASE_S} s here, 300 s in Azure) and one resume-timer tick "
            "(<= 5 min) for the time a killed run waits in Azure",
        )
    ]


def wait_for(condition: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench waited too long")
        time.sleep(poll_s)


def run(sizes: list[int], *, latency_ms: int = LATENCY_MS, concurrency: int = 8, storm: float = 0.1) -> list[Row]:
    """Every size; the 429 storm (`storm`: the share of list requests throttled) and the kill/resume on the
    smallest only; then the ratio of the peak RSS at the largest size to the smallest."""
    rows: list[Row] = []
    for index, guests in enumerate(sorted(sizes)):
        rows += bench_size(guests, latency_ms=latency_ms, storm=storm if index == 0 else 0.0, concurrency=concurrency)
        if index == 0:
            rows += bench_resume(guests, concurrency=concurrency)
    rss: dict[str, float] = {}
    for row in rows:
        if row.metric.startswith("peak RSS"):
            rss[row.bench] = max(rss.get(row.bench, 0.0), float(row.value.split()[0]))
    sizes_sorted = sorted(sizes)
    if len(sizes_sorted) >= 2:
        low, high = rss[f"sweep {sizes_sorted[0]:,}"], rss[f"sweep {sizes_sorted[-1]:,}"]
        rows.append(
            Row(
                f"sweep {sizes_sorted[-1]:,} / {sizes_sorted[0]:,}",
                "peak RSS ratio, largest tenant / smallest (plan and applied sweep, the highest of each)",
                f"{high / low:.2f} ({high:.0f} MB / {low:.0f} MB)",
                f"<= {RSS_RATIO_TARGET}",
                high / low <= RSS_RATIO_TARGET,
                "memory flat in the tenant's size: the plan and the reports stream through the report store",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep")
    parser.add_argument("--child", metavar="GRAPH_URL", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--apply", action="store_true")
    parser.add_argument("--scale", type=float, default=QUOTA_SCALE)
    parser.add_argument("--folder", help="keep state and reports here (default: a temporary folder)")
    parser.add_argument("--lease", type=int, default=300, help="STALE_SWEEP_LEASE_SECONDS")
    args = parser.parse_args(argv)
    result = asyncio.run(
        sweep(
            args.child,
            concurrency=args.concurrency,
            apply=args.apply,
            scale=args.scale,
            folder=args.folder,
            lease_s=args.lease,
        )
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
