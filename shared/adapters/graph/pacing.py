"""Keeping to Graph's quotas instead of provoking 429s: a sliding-window pacer shared by every caller of a gateway.

Graph counts a quota per app and tenant over a window (signInActivity: 10 a minute; sign-in logs: 5 per 10 s;
docs/graph-gateway.md, "Quotas"). A pacer lets at most `limit` requests start in any `window_s`; the next caller
waits for the oldest to leave the window. It is per process: several instances of the app share the quota, and
the 429 hold (GraphGateway.throttle) covers what pacing cannot see.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class Pacer:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        margin_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a pacer needs a limit of at least 1 and a positive window")
        self.limit = limit
        self.window_s = window_s
        self.margin_s = margin_s
        """Extra wait past the window's edge: Graph counts a request when it arrives, a little after it started
        here, so a request started exactly one window later could still land inside Graph's window."""
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self.waited_s = 0.0
        """Seconds callers spent waiting for the window (a figure for logs and benchmarks)."""

    async def acquire(self, n: int = 1) -> None:
        """Wait until `n` more requests fit in the window, then count them as started."""
        if n > self.limit:
            raise ValueError(f"{n} requests can never fit a window of {self.limit}")
        sleep = self._sleep or asyncio.sleep
        while True:
            now = self._clock()
            while self._starts and self._starts[0] <= now - self.window_s - self.margin_s:
                self._starts.popleft()
            if len(self._starts) + n <= self.limit:
                self._starts.extend([now] * n)
                return
            wait = self._starts[len(self._starts) + n - self.limit - 1] + self.window_s + self.margin_s - now
            self.waited_s += max(wait, 0.0)
            await sleep(max(wait, 0.001))


EDGE_MARGIN = 0.02
"""The margin past a window's edge, as a share of the window (1.2 s on a minute) ..."""
MIN_EDGE_MARGIN_S = 0.05
"""... and at least this: the time a request can take to arrive and be counted (benchmarks shrink windows)."""


def pacer(limit: int, window_s: float) -> Pacer | None:
    """A pacer for a configured limit (0: no pacing)."""
    margin = max(window_s * EDGE_MARGIN, MIN_EDGE_MARGIN_S)
    return Pacer(limit, window_s, margin_s=margin) if limit > 0 else None
