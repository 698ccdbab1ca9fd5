"""Bench 5: the risk poller's reads of the sign-in logs against the reports quota of the strict simulator.

Graph allows 5 requests a 10 s to the sign-in logs per app and tenant (concepts/throttling-limits.md), 1,000
sign-ins a page. A busy tenant's window of sign-ins takes pages / 5 x 10 s at least; the gateway paces itself to
that (GRAPH_REPORTS_PER_10_SECONDS) instead of provoking 429s. As for the sweep, the quota runs QUOTA_SCALE times
faster on both sides, and the figure is the ratio of the read's wall time to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Row, SimProcess, run_json, tenant_file

PAGE = 1000  # signin-list.md: default and maximum page
REPORTS_PER_10_S = 5
QUOTA_SCALE = 10.0
TIME_FLOOR_RATIO_TARGET = 1.10
THROTTLED_SHARE_TARGET = 0.01
WINDOW_MINUTES = 60


def quota_floor_s(pages: int, scale: float = QUOTA_SCALE) -> float:
    return max(0, math.ceil(pages / REPORTS_PER_10_S) - 1) * 10.0 / scale


async def read(url: str, scale: float) -> dict[str, Any]:
    from shared.adapters.credentials import LocalTokenCredential, local_token_url
    from shared.adapters.graph import GraphConfig, GraphGateway

    config = GraphConfig(base_url=url, max_retries=10, quota_time_scale=scale)
    async with GraphGateway(LocalTokenCredential(token_url=local_token_url(url)), config) as graph:
        until = datetime.now(UTC)
        started = time.perf_counter()
        pages = entries = 0
        async for page in graph.iter_sign_in_pages(until - timedelta(minutes=WINDOW_MINUTES), until):
            pages += 1
            entries += len(page)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "pages": pages, "entries": entries}


def run(sign_ins: int = 20_000) -> list[Row]:
    name = f"poller {sign_ins:,} sign-ins"
    with SimProcess(tenant_file(2000)) as sim:
        sim.call("throttling", time_scale=QUOTA_SCALE)
        sim.call("signins", count=sign_ins, minutes=WINDOW_MINUTES)
        sim.call("reset")
        result = run_json(
            "the poller child",
            ["-m", "bench.poller", "--child", sim.base_url, "--scale", str(QUOTA_SCALE)],
            timeout_s=600,
        )
        stats = sim.call("stats")
    floor = quota_floor_s(result["pages"])  # the pages this window really has (a partial one included)
    if floor <= 0:
        raise ValueError(f"{sign_ins} sign-ins fit in one quota window: no floor to measure against")
    total = sum(stats["requests"].values())
    return [
        Row(
            name,
            f"read of a {WINDOW_MINUTES}-minute window / quota floor (5 requests per 10 s, {QUOTA_SCALE:g}x faster)",
            f"{result['wall_s'] / floor:.2f} ({result['wall_s']:.2f} s / {floor:.2f} s)",
            f"<= {TIME_FLOOR_RATIO_TARGET}",
            result["wall_s"] <= TIME_FLOOR_RATIO_TARGET * floor and result["entries"] >= sign_ins,
            f"{result['pages']} pages, {result['entries']:,} sign-ins; real time "
            f"{result['wall_s'] * QUOTA_SCALE:.0f} s",
        ),
        Row(
            name,
            "429s answered / Graph requests",
            f"{stats['quota_throttled']} / {total}",
            f"< {THROTTLED_SHARE_TARGET:.0%}",
            stats["quota_throttled"] < THROTTLED_SHARE_TARGET * total,
            "the gateway paces itself to the reports quota",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.poller")
    parser.add_argument("--child", metavar="GRAPH_URL", required=True)
    parser.add_argument("--scale", type=float, default=QUOTA_SCALE)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(read(args.child, args.scale))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
