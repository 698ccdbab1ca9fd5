"""What every handler can reach: the tenant store, the clock, the outbox, the dispatcher (for $batch), the
change-notification hub (for /subscriptions) and the invitation log (for /invitations)."""

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
    invitations: list[dict[str, Any]] = field(default_factory=list)
    """POST /invitations as recorded (resources/invitations.py): what a test reads, like the mail outbox."""
