"""Use case: how is the /users change-notification subscription doing? For operators (`guestwarden subscriptions
status`, `guestwarden doctor`).

It reads what guestwarden remembers (the keeper's state record) and what Graph says about that subscription,
and judges: alive, pointing at our notification URL, and further from expiry than the keeper's renewal window.
It changes nothing; `ensure_subscription` (services/subscriptions.py) is the one that acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.domain.directory import GraphSubscription
from shared.ports.clock import Clock, utc_now
from shared.ports.state import RecordStore
from shared.services.subscriptions import RECORD_KEY, RECORD_KIND, SubscriptionConfig


class SubscriptionReader(Protocol):
    async def get_subscription(self, subscription_id: str) -> GraphSubscription | None: ...


@dataclass(frozen=True)
class SubscriptionStatus:
    remembered_id: str | None
    live: bool
    expires: str | None
    hours_left: float | None
    notification_url_matches: bool | None
    """None when no GRAPH_NOTIFICATION_URL is configured to compare with."""
    healthy: bool
    advice: str


async def subscription_status(
    graph: SubscriptionReader, state: RecordStore, config: SubscriptionConfig, clock: Clock = utc_now
) -> SubscriptionStatus:
    record = await state.get(RECORD_KIND, RECORD_KEY)
    remembered = record.value.get("id") if record else None
    sub = await graph.get_subscription(str(remembered)) if isinstance(remembered, str) else None
    if sub is None:
        advice = "no live subscription: run `guestwarden subscriptions ensure` (or wait for the keeper timer)"
        return SubscriptionStatus(
            remembered if isinstance(remembered, str) else None, False, None, None, None, False, advice
        )
    hours = (sub.expiration - clock()).total_seconds() / 3600
    matches = sub.notification_url == config.notification_url if config.notification_url else None
    healthy = hours > config.renew_before.total_seconds() / 3600 and matches is not False
    if matches is False:
        advice = "the subscription points at another URL: `ensure` recreates it for GRAPH_NOTIFICATION_URL"
    elif not healthy:
        advice = "expires within the renewal window: check that the keeper timer runs, or run `ensure`"
    else:
        advice = "healthy"
    return SubscriptionStatus(sub.id, True, sub.expiration.isoformat(), round(hours, 1), matches, healthy, advice)
