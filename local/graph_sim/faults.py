"""Fault injection: throttling (429 + Retry-After), outages (503) and latency, decided before a handler runs.

Random faults come from a seeded generator so a run can be replayed; `fail_next` queues exact faults for
deterministic tests. A route pattern (fnmatch) is matched against the route key ("GET /users/{id}") and,
for requests inside a $batch, also against the prefixed key ("BATCH GET /users/{id}"). The $batch
envelope itself ("POST /$batch") is only faulted when a pattern names it explicitly.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

BATCH_ENVELOPE = "POST /$batch"


@dataclass(frozen=True)
class FaultDecision:
    latency_ms: int = 0
    status: int | None = None
    retry_after_s: int | None = None


@dataclass
class _QueuedFault:
    remaining: int
    status: int
    retry_after_s: int
    route: str | None


def _matches(pattern: str, keys: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for key in keys)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.rate_429 = 0.0
            self.rate_503 = 0.0
            self.retry_after_s = 1
            self.latency_ms = 0
            self.spike_rate = 0.0
            self.spike_ms = 0
            self.routes: tuple[str, ...] | None = None
            self._random = random.Random()
            self._queued: list[_QueuedFault] = []
            self.injected: Counter[str] = Counter()
            """What was injected so far: "429", "503" (and other statuses) and "spike" (latency spikes)."""

    def configure(
        self,
        rate_429: float = 0.0,
        retry_after_s: int = 1,
        rate_503: float = 0.0,
        latency_ms: int = 0,
        seed: int | None = None,
        routes: Iterable[str] | None = None,
        spike_rate: float = 0.0,
        spike_ms: int = 0,
    ) -> None:
        """Random faults; `spike_rate` of the eligible requests also wait `spike_ms` (a latency spike)."""
        if not (0.0 <= rate_429 <= 1.0 and 0.0 <= rate_503 <= 1.0 and rate_429 + rate_503 <= 1.0):
            raise ValueError("fault rates must be within [0, 1] and sum to at most 1")
        if not 0.0 <= spike_rate <= 1.0 or spike_ms < 0:
            raise ValueError("spike_rate must be within [0, 1] and spike_ms >= 0")
        with self._lock:
            self.rate_429 = rate_429
            self.rate_503 = rate_503
            self.retry_after_s = retry_after_s
            self.latency_ms = latency_ms
            self.routes = tuple(routes) if routes is not None else None
            self.spike_rate = spike_rate
            self.spike_ms = spike_ms
            self._random = random.Random(seed)

    def fail_next(self, n: int = 1, status: int = 429, retry_after_s: int = 1, route: str | None = None) -> None:
        with self._lock:
            self._queued.append(_QueuedFault(n, status, retry_after_s, route))

    def decide(self, route_key: str, in_batch: bool = False) -> FaultDecision:
        keys = (route_key, f"BATCH {route_key}") if in_batch else (route_key,)
        envelope = route_key == BATCH_ENVELOPE and not in_batch
        with self._lock:
            for queued in self._queued:
                if queued.route is None and envelope:
                    continue
                if queued.route is not None and not _matches(queued.route, keys):
                    continue
                queued.remaining -= 1
                if queued.remaining <= 0:
                    self._queued.remove(queued)
                self.injected[str(queued.status)] += 1
                return FaultDecision(self.latency_ms, queued.status, queued.retry_after_s)
            eligible = not envelope if self.routes is None else any(_matches(pattern, keys) for pattern in self.routes)
            if not eligible:
                return FaultDecision()
            latency = self.latency_ms
            if self.spike_rate and self._random.random() < self.spike_rate:
                latency += self.spike_ms
                self.injected["spike"] += 1
            roll = self._random.random()
            if roll < self.rate_429:
                self.injected["429"] += 1
                return FaultDecision(latency, 429, self.retry_after_s)
            if roll < self.rate_429 + self.rate_503:
                self.injected["503"] += 1
                return FaultDecision(latency, 503, self.retry_after_s)
            return FaultDecision(latency)
