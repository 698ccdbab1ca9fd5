"""The subscription keeper and the delta backstop on fakes: create, renew, recreate, no duplicates, resync."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.graph import GraphError
from shared.domain.directory import DirectoryUser
from shared.domain.messages import LifecycleEvent
from shared.services.delta import DeltaDeps, run_delta_backstop
from shared.services.subscriptions import (
    SubscriptionConfig,
    SubscriptionDeps,
    SubscriptionQuotaExceeded,
    ensure_subscription,
    handle_lifecycle_event,
    known_subscription_ids,
)
from tests.fakes.publisher import InMemoryPublisher
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes import FakeDelta, FakeSubscriptions

URL = "https://guestwarden.example.net/api/graph/notifications?code=key"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def keeper(
    clock: Clock, graph: FakeSubscriptions | None = None, state: MemoryStateStore | None = None, url: str = URL
) -> SubscriptionDeps:
    config = SubscriptionConfig(
        URL if url is None else url, None, "client-state-secret-0123", timedelta(minutes=41000), timedelta(hours=72)
    )
    return SubscriptionDeps(graph or FakeSubscriptions(clock), state or MemoryStateStore(clock=clock), config, clock)


async def test_creates_once_then_leaves_it_alone_then_renews_before_expiry() -> None:
    clock = Clock()
    deps = keeper(clock)
    created = await ensure_subscription(deps)
    assert created.action == "created"
    assert await known_subscription_ids(deps.state) == {created.subscription_id}
    assert (await ensure_subscription(deps)).action == "unchanged"
    clock.now += timedelta(minutes=41000) - timedelta(hours=71)
    renewed = await ensure_subscription(deps)
    assert renewed.action == "renewed" and renewed.subscription_id == created.subscription_id
    assert renewed.expires == clock.now + timedelta(minutes=41000)
    assert len(deps.graph.subs) == 1  # type: ignore[attr-defined]


async def test_recreates_when_graph_forgot_it_and_keeps_accepting_the_old_id() -> None:
    clock = Clock()
    deps = keeper(clock)
    first = await ensure_subscription(deps)
    clock.now += timedelta(days=30)  # expired: Graph deleted it
    second = await ensure_subscription(deps)
    assert second.action == "recreated" and second.subscription_id != first.subscription_id
    assert await known_subscription_ids(deps.state) == {first.subscription_id, second.subscription_id}


async def test_recreates_when_the_notification_url_changes() -> None:
    clock = Clock()
    graph, state = FakeSubscriptions(clock), MemoryStateStore(clock=clock)
    await ensure_subscription(keeper(clock, graph, state))
    moved = await ensure_subscription(keeper(clock, graph, state, url=URL.replace("example.net", "example.org")))
    assert moved.action == "recreated"
    assert [s.notification_url for s in graph.subs.values()] == [URL.replace("example.net", "example.org")]


async def test_a_rotated_client_state_recreates_the_subscription_and_state_never_holds_the_secret() -> None:
    clock = Clock()
    graph, state = FakeSubscriptions(clock), MemoryStateStore(clock=clock)
    first = await ensure_subscription(keeper(clock, graph, state))
    assert (await ensure_subscription(keeper(clock, graph, state))).action == "unchanged"
    rotated = replace(
        keeper(clock, graph, state), config=replace(keeper(clock).config, client_state="rotated-0123456789")
    )
    second = await ensure_subscription(rotated)
    assert second.action == "recreated" and second.subscription_id != first.subscription_id
    assert [s.id for s in graph.subs.values()] == [second.subscription_id]  # the old one is deleted
    assert (await ensure_subscription(rotated)).action == "unchanged"
    record = await state.get("subscription", "users")
    assert record is not None and "client-state-secret" not in str(record.value) and "rotated" not in str(record.value)
    reasons = [e.reason async for e in state.query(clock.now - timedelta(days=1), action="recreate-subscription")]
    assert reasons == ["the clientState was rotated"]


async def test_lost_state_adopts_the_existing_subscription_instead_of_duplicating() -> None:
    clock = Clock()
    graph = FakeSubscriptions(clock)
    await ensure_subscription(keeper(clock, graph))
    adopted = await ensure_subscription(keeper(clock, graph, MemoryStateStore(clock=clock)))
    assert adopted.action == "adopted"
    assert len(graph.subs) == 1


async def test_concurrent_keepers_create_one_subscription() -> None:
    clock = Clock()
    graph, state = FakeSubscriptions(clock), MemoryStateStore(clock=clock)
    outcomes = await asyncio.gather(*(ensure_subscription(keeper(clock, graph, state)) for _ in range(10)))
    assert len(graph.subs) == 1
    assert [o.action for o in outcomes].count("created") == 1


async def test_quota_error_is_explained() -> None:
    clock = Clock()
    graph = FakeSubscriptions(clock)
    graph.quota = 0
    with pytest.raises(SubscriptionQuotaExceeded, match="quota"):
        await ensure_subscription(keeper(clock, graph))


async def test_lifecycle_reauthorize_and_fallbacks() -> None:
    clock = Clock()
    deps = keeper(clock)
    sub = await ensure_subscription(deps)
    subscription_id = sub.subscription_id
    assert subscription_id

    def event(name: str) -> LifecycleEvent:
        return LifecycleEvent(subscription_id, name)

    assert await handle_lifecycle_event(event("reauthorizationRequired"), deps) == "reauthorized"
    deps.graph.reauthorize_fails = GraphError(500, "x", "boom")  # type: ignore[attr-defined]
    assert await handle_lifecycle_event(event("reauthorizationRequired"), deps) == "renewed"
    deps.graph.subs.clear()  # type: ignore[attr-defined]
    assert await handle_lifecycle_event(event("subscriptionRemoved"), deps) == "ensured:recreated"


def guest(user_id: str, state: str = "Accepted") -> DirectoryUser:
    return DirectoryUser(id=user_id, user_type="Guest", external_user_state=state)


def delta_deps(
    graph: FakeDelta,
    first_run: str = "latest",
    state: MemoryStateStore | None = None,
    publisher: InMemoryPublisher | None = None,
) -> DeltaDeps:
    clock = Clock()
    return DeltaDeps(
        graph,
        state or MemoryStateStore(clock=clock),
        publisher or InMemoryPublisher(),
        "guest-changes",
        first_run,  # type: ignore[arg-type]  # tests pass other values on purpose
        clock,
    )


async def test_delta_first_run_from_now_then_enqueues_changed_accepted_guests() -> None:
    graph = FakeDelta([guest("a"), guest("b")])
    publisher = InMemoryPublisher()
    deps = delta_deps(graph, publisher=publisher)
    assert (await run_delta_backstop(deps)).status == "started-from-now"
    assert publisher.messages("guest-changes") == []
    graph.change(guest("c"))
    graph.change(guest("p", "PendingAcceptance"))
    graph.change(DirectoryUser(id="m", user_type="Member"))
    outcome = await run_delta_backstop(deps)
    assert (outcome.status, outcome.changed, outcome.enqueued) == ("synced", 3, 1)
    assert [m.body["userId"] for m in publisher.messages("guest-changes")] == ["c"]
    assert (await run_delta_backstop(deps)).enqueued == 0  # the deltaLink moved on


async def test_delta_full_first_run_pages_through_every_user() -> None:
    graph = FakeDelta([guest(str(i)) for i in range(5)] + [guest("p", "PendingAcceptance")], page_size=2)
    publisher = InMemoryPublisher()
    outcome = await run_delta_backstop(delta_deps(graph, "full", publisher=publisher))
    assert (outcome.pages, outcome.enqueued) == (3, 5)


async def test_expired_delta_link_triggers_a_full_resync() -> None:
    graph = FakeDelta([guest("a"), guest("b"), guest("c")])
    publisher = InMemoryPublisher()
    deps = delta_deps(graph, publisher=publisher)
    await run_delta_backstop(deps)
    graph.expired = True
    outcome = await run_delta_backstop(deps)
    assert outcome.status == "resynced"
    assert {m.body["userId"] for m in publisher.messages("guest-changes")} == {"a", "b", "c"}
    graph.expired = False
    graph.change(guest("d"))
    assert (await run_delta_backstop(deps)).enqueued == 1  # the new link from the resync works


async def test_a_subscription_without_our_lifecycle_url_is_recreated_with_it() -> None:
    """/users gets its one lifecycle event (reauthorizationRequired) only at the lifecycleNotificationUrl, which
    PATCH cannot add: a subscription made without it (an older deploy, another tool) is replaced."""
    clock = Clock()
    graph = FakeSubscriptions(clock)
    old = await ensure_subscription(keeper(clock, graph))  # made without a lifecycle URL
    lifecycle = f"{URL}&lifecycle=1"
    deps = keeper(clock, graph)
    deps = replace(deps, config=replace(deps.config, lifecycle_notification_url=lifecycle))
    await deps.state.put("subscription", "users", {"id": old.subscription_id}, etag=None)
    outcome = await ensure_subscription(deps)
    assert outcome.action == "recreated" and outcome.subscription_id != old.subscription_id
    [live] = graph.subs.values()
    assert live.lifecycle_notification_url == lifecycle
    assert (await ensure_subscription(deps)).action == "unchanged"


async def test_adoption_skips_a_subscription_without_our_lifecycle_url() -> None:
    clock = Clock()
    graph = FakeSubscriptions(clock)
    await ensure_subscription(keeper(clock, graph))  # no lifecycle URL
    deps = keeper(clock, graph)
    deps = replace(deps, config=replace(deps.config, lifecycle_notification_url=f"{URL}&lifecycle=1"))
    outcome = await ensure_subscription(deps)
    assert outcome.action == "created"
    assert [s.lifecycle_notification_url for s in graph.subs.values()] == [f"{URL}&lifecycle=1"]
