"""Graph's quotas, applied: each request is admitted or answered 429 with the Retry-After that would let it in.

The quotas and costs are the rows of local/graph_sim/contract_throttling.py. Every quota is a sliding window on
real time (time.monotonic(), as Graph's windows are wall time; jumping the simulator's clock does not refill
them). Inside a `$batch` each request is admitted on its own, as Graph evaluates them. `time_scale` shrinks every
window by that factor (benchmarks: a minute's quota passes in a second, Retry-After shrinks alike, and the ratio
of a run to its floor is unchanged).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local.graph_sim.contract_throttling import (
    CONDITIONAL_ACCESS,
    CONDITIONAL_ACCESS_PREFIXES,
    IDENTITY_GET_COSTS,
    IDENTITY_PREFIXES,
    IDENTITY_RU_PER_10S,
    IDENTITY_WRITES,
    OTHER_IDENTITY_GET_COST,
    OUTLOOK_CONCURRENT_PER_MAILBOX,
    REPORTS,
    SIGN_IN_ACTIVITY,
    WRITE_COST,
)
from local.graph_sim.errors import GraphError
from local.graph_sim.odata import decode_token

SEND_MAIL = "/users/{id}/sendMail"


@dataclass(frozen=True)
class Throttled:
    quota: str
    retry_after_s: float


@dataclass(frozen=True)
class Ticket:
    """An admitted request; `release()` it when it is answered (Outlook counts requests in flight)."""

    mailbox: str | None = None


def tenant_size(users: int) -> str:
    return "small" if users < 50 else "medium" if users <= 500 else "large"


def _select_text(template: str, query: Mapping[str, str]) -> str:
    text = " ".join(query.get(name, "") for name in ("$select", "$filter"))
    token = query.get("$skiptoken")
    if token and template == "/users":  # a nextLink: the first request's options ride in the opaque token
        try:
            state = decode_token(token)
        except GraphError:
            return text
        text += " " + " ".join(str(state.get(key) or "") for key in ("s", "f"))
    return text


def ru_cost(method: str, template: str, query: Mapping[str, str]) -> int:
    """The identity service's resource-unit cost of a request (contract_throttling.IDENTITY_GET_COSTS)."""
    if method != "GET":
        return WRITE_COST
    cost = IDENTITY_GET_COSTS.get(template, OTHER_IDENTITY_GET_COST)
    if "$select" in query:
        cost -= 1
    if "$expand" in query:
        cost += 1
    top = query.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1)


class Throttling:
    """The simulator's quotas (`sim.throttling`). Each limit can be changed or set to None (off); `enabled`
    switches them all. Defaults are the documented limits."""

    def __init__(self, users: int) -> None:
        self._lock = threading.Lock()
        self.enabled = True
        self.size = tenant_size(users)
        self.identity_ru_per_10s: float | None = IDENTITY_RU_PER_10S[self.size]
        self.writes_per_150s: float | None = IDENTITY_WRITES.limit
        self.reports_per_10s: float | None = REPORTS.limit
        self.sign_in_activity_per_minute: float | None = SIGN_IN_ACTIVITY.limit
        self.outlook_concurrency: int | None = OUTLOOK_CONCURRENT_PER_MAILBOX
        self.conditional_access_per_s: float | None = CONDITIONAL_ACCESS.limit
        self.time_scale = 1.0
        self.throttled: Counter[str] = Counter()
        """429s answered, per quota name."""
        self._windows: dict[str, deque[tuple[float, float]]] = {}
        self._in_flight: Counter[str] = Counter()

    def configure(self, **limits: Any) -> None:
        for name, value in limits.items():
            if not hasattr(self, name) or name.startswith("_"):
                raise ValueError(f"unknown throttling setting {name!r}")
            setattr(self, name, value)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
            self._in_flight.clear()
            self.throttled.clear()

    def admit(
        self, method: str, template: str, params: Mapping[str, str], query: Mapping[str, str]
    ) -> Ticket | Throttled:
        if not self.enabled:
            return Ticket()
        now = time.monotonic()
        charges: list[tuple[str, float, float, float | None]] = []  # (quota, cost, window, limit)
        if template.startswith("/auditLogs/signIns"):
            charges.append((REPORTS.name, 1, REPORTS.window_s, self.reports_per_10s))
        if "signinactivity" in _select_text(template, query).lower():
            charges.append((SIGN_IN_ACTIVITY.name, 1, SIGN_IN_ACTIVITY.window_s, self.sign_in_activity_per_minute))
        if template.startswith(CONDITIONAL_ACCESS_PREFIXES):  # per tenant for all apps: one window
            charges.append((CONDITIONAL_ACCESS.name, 1, CONDITIONAL_ACCESS.window_s, self.conditional_access_per_s))
        mailbox = None
        if template == SEND_MAIL:
            mailbox = params.get("id", "").lower()
        elif template.startswith(IDENTITY_PREFIXES):
            charges.append(("identity", ru_cost(method, template, query), 10.0, self.identity_ru_per_10s))
            if method != "GET":
                charges.append((IDENTITY_WRITES.name, 1, IDENTITY_WRITES.window_s, self.writes_per_150s))
        with self._lock:
            for quota, cost, window, limit in charges:
                if limit is None:
                    continue
                wait = self._wait(quota, cost, window / self.time_scale, limit, now)
                if wait > 0:
                    self.throttled[quota] += 1
                    return Throttled(quota, wait)
            if mailbox is not None and self.outlook_concurrency is not None:
                if self._in_flight[mailbox] >= self.outlook_concurrency:
                    self.throttled["outlook concurrency"] += 1
                    return Throttled("outlook concurrency", 1.0 / self.time_scale)
                self._in_flight[mailbox] += 1
            for quota, cost, _, limit in charges:
                if limit is not None:
                    self._windows.setdefault(quota, deque()).append((now, cost))
        return Ticket(mailbox)

    def release(self, ticket: Ticket) -> None:
        if ticket.mailbox is not None:
            with self._lock:
                self._in_flight[ticket.mailbox] = max(0, self._in_flight[ticket.mailbox] - 1)

    def _wait(self, quota: str, cost: float, window: float, limit: float, now: float) -> float:
        """Seconds until `cost` more fits in the window (0: it fits now)."""
        entries = self._windows.setdefault(quota, deque())
        while entries and entries[0][0] <= now - window:
            entries.popleft()
        used = sum(c for _, c in entries)
        excess = used + cost - limit
        if excess <= 0:
            return 0.0
        freed = 0.0
        for stamp, spent in entries:
            freed += spent
            if freed >= excess:
                return max(math.ceil((stamp + window - now) * 1000) / 1000, 0.001)
        return window  # more than a whole window's worth at once: never fits; wait a window
