"""`subscription_status` (what `guestwarden subscriptions status` and the doctor report) on fakes: remembered or
not, alive or not, ours or not, inside the keeper's renewal window or not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.services.subscription_status import SubscriptionStatus, subscription_status
from shared.services.subscriptions import RECORD_KEY, RECORD_KIND, SubscriptionConfig, SubscriptionDeps
from shared.services.subscriptions import ensure_subscription as keep
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes import FakeSubscriptions

URL = "https://guestwarden.example.net/api/graph/notifications?code=key"
LIFETIME = timedelta(minutes=41000)
RENEW_BEFORE = timedelta(hours=72)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def world(url: str = URL) -> tuple[Clock, SubscriptionDeps]:
    clock = Clock()
    config = SubscriptionConfig(url, None, "client-state-secret-0123", LIFETIME, RENEW_BEFORE)
    return clock, SubscriptionDeps(FakeSubscriptions(clock), MemoryStateStore(clock=clock), config, clock)


async def status_of(deps: SubscriptionDeps, config: SubscriptionConfig | None = None) -> SubscriptionStatus:
    return await subscription_status(deps.graph, deps.state, config or deps.config, deps.clock)


async def test_nothing_remembered_is_unhealthy_and_says_to_ensure() -> None:
    _, deps = world()
    status = await status_of(deps)
    assert (status.remembered_id, status.live, status.expires, status.hours_left) == (None, False, None, None)
    assert status.notification_url_matches is None and not status.healthy
    assert "guestwarden subscriptions ensure" in status.advice


async def test_a_fresh_subscription_is_healthy_with_its_hours_left() -> None:
    clock, deps = world()
    created = await keep(deps)
    status = await status_of(deps)
    assert status.remembered_id == created.subscription_id and status.live
    assert status.expires == (clock.now + LIFETIME).isoformat()
    assert status.hours_left == round(LIFETIME.total_seconds() / 3600, 1)
    assert status.notification_url_matches is True and status.healthy and status.advice == "healthy"


async def test_inside_the_renewal_window_is_unhealthy() -> None:
    clock, deps = world()
    await keep(deps)
    clock.now += LIFETIME - RENEW_BEFORE  # exactly the window: the keeper renews now, so not healthy
    status = await status_of(deps)
    assert status.live and status.hours_left == 72.0 and not status.healthy
    assert status.advice.startswith("expires within the renewal window")
    clock.now -= timedelta(minutes=6)
    assert (await status_of(deps)).healthy


async def test_a_subscription_for_another_url_is_unhealthy_unless_no_url_is_configured() -> None:
    _, deps = world()
    await keep(deps)
    moved = replace(deps.config, notification_url=URL.replace("example.net", "example.org"))
    status = await status_of(deps, moved)
    assert status.notification_url_matches is False and not status.healthy
    assert "points at another URL" in status.advice
    unset = await status_of(deps, replace(deps.config, notification_url=""))
    assert unset.notification_url_matches is None and unset.healthy


async def test_a_remembered_subscription_graph_forgot_is_not_live() -> None:
    clock, deps = world()
    created = await keep(deps)
    clock.now += LIFETIME + timedelta(minutes=1)  # expired: Graph deleted it
    calls = len(deps.graph.calls)  # type: ignore[attr-defined]
    status = await status_of(deps)
    assert deps.graph.calls[calls:] == ["get"]  # type: ignore[attr-defined]
    assert status.remembered_id == created.subscription_id and not status.live and not status.healthy
    record = await deps.state.get(RECORD_KIND, RECORD_KEY)
    assert record is not None and record.value["id"] == created.subscription_id  # status only reads
