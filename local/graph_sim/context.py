"""What every handler can reach: the tenant store, the clock, the outbox, the dispatcher (for $batch) and
the change-notification hub (for /subscriptions)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from local.graph_sim.clock import SimClock
from local.graph_sim.messages import SimRequest, SimResponse
from local.graph_sim.store import TenantStore

if TYPE_CHECKING:
    from local.graph_sim.notifications import NotificationHub


@dataclass
class SimContext:
    store: TenantStore
    clock: SimClock
    outbox: list[dict[str, Any]] = field(default_factory=list)
    dispatch: Callable[[SimRequest], Awaitable[SimResponse]] | None = None
    notifications: NotificationHub | None = None
