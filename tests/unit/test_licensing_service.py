"""license_guest on in-memory fakes: exactly once, usage location first, no-seat path, retries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.graph import GraphError
from shared.domain.directory import DirectoryUser, SubscribedSku
from shared.domain.licensing import LicensingPolicy, NoSuchSku
from shared.services.licensing import Alerting, LicensingDeps, RetryLater, license_guest
from tests.fakes.publisher import InMemoryPublisher
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes import FakeGraph

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
QUEUE = "guest-changes"
POLICY = LicensingPolicy(mode="sku", sku_part_number="GUEST_ACCESS", default_usage_location="US")


def sku(free: int = 5) -> SubscribedSku:
    return SubscribedSku(
        "sku-g", "GUEST_ACCESS", enabled_units=10, consumed_units=10 - free, capability_status="Enabled"
    )


def accepted(user_id: str = "g1", **props: object) -> DirectoryUser:
    base: dict[str, object] = {
        "id": user_id,
        "user_type": "Guest",
        "external_user_state": "Accepted",
        "mail": f"{user_id}@fabrikam.com",
        "account_enabled": True,
    }
    base.update(props)
    return DirectoryUser(**base)  # type: ignore[arg-type]


async def no_sleep(_: float) -> None:
    return None


def make_deps(graph: FakeGraph, policy: LicensingPolicy = POLICY, **kw: object) -> LicensingDeps:
    state = kw.pop("state", None) or MemoryStateStore(clock=lambda: NOW)
    return LicensingDeps(
        graph=graph,
        state=state,  # type: ignore[arg-type]
        publisher=kw.pop("publisher", None) or InMemoryPublisher(),  # type: ignore[arg-type]
        queue=QUEUE,
        policy=policy,
        alerting=Alerting("guestwarden@contoso.com", ("ops@contoso.com",)),
        clock=lambda: NOW,
        sleep=no_sleep,
        **kw,  # type: ignore[arg-type]
    )


async def audit(deps: LicensingDeps) -> list[tuple[str, str]]:
    return [(e.action, e.subject) async for e in deps.state.query(NOW - timedelta(days=1))]


async def test_accepted_guest_gets_usage_location_then_licence_once() -> None:
    graph = FakeGraph([accepted()], [sku()])
    deps = make_deps(graph)
    outcome = await license_guest("g1", deps)
    assert outcome.status == "licensed"
    assert outcome.actions == ("set-usage-location", "assign-license")
    assert graph.users["g1"].usage_location == "US"
    assert "sku-g" in graph.users["g1"].assigned_sku_ids
    assert await audit(deps) == [("set-usage-location", "g1"), ("assign-license", "g1")]
    # the same change delivered again (duplicate notification, delta pass): nothing more happens
    again = await license_guest("g1", deps)
    assert again.status == "already-done"
    assert graph.count("assign_license") == 1
    assert graph.skus["sku-g"].consumed_units == 6


async def test_concurrent_duplicates_license_once() -> None:
    graph = FakeGraph([accepted()], [sku()])
    deps = make_deps(graph)
    results = await asyncio.gather(*(license_guest("g1", deps) for _ in range(10)), return_exceptions=True)
    statuses = [r.status if not isinstance(r, BaseException) else type(r).__name__ for r in results]
    assert statuses.count("licensed") == 1
    assert set(statuses) <= {"licensed", "already-done", "RetryLater"}
    assert graph.count("assign_license") == 1


async def test_pending_guest_is_skipped_and_licensed_after_accepting() -> None:
    graph = FakeGraph([accepted(external_user_state="PendingAcceptance")], [sku()])
    deps = make_deps(graph)
    first = await license_guest("g1", deps)
    assert (first.status, first.reason) == ("skipped", "invitation-not-accepted")
    graph.users["g1"] = accepted()
    assert (await license_guest("g1", deps)).status == "licensed"  # the skip did not close the ledger


async def test_user_not_yet_readable_is_retried() -> None:
    graph = FakeGraph([accepted()], [sku()])
    graph.unreadable_reads["g1"] = 2
    outcome = await license_guest("g1", make_deps(graph))
    assert outcome.status == "licensed"
    assert graph.count("get_user") == 3


async def test_licence_refused_right_after_setting_usage_location_is_retried() -> None:
    graph = FakeGraph([accepted()], [sku()])
    graph.usage_location_lag["g1"] = 2
    outcome = await license_guest("g1", make_deps(graph))
    assert outcome.status == "licensed"
    assert graph.count("assign_license") == 3


async def test_no_seat_alerts_once_a_day_and_reschedules_without_losing_the_guest() -> None:
    graph = FakeGraph([accepted("g1"), accepted("g2")], [sku(free=0)])
    publisher = InMemoryPublisher()
    deps = make_deps(graph, publisher=publisher)
    for user_id in ("g1", "g2"):
        outcome = await license_guest(user_id, deps)
        assert outcome.status == "rescheduled"
    assert len(graph.outbox) == 1  # one alert per SKU per day, however many guests wait
    assert "GUEST_ACCESS" in graph.outbox[0].subject
    retries = publisher.messages(QUEUE)
    assert [m.body["userId"] for m in retries] == ["g1", "g2"]
    assert all(m.scheduled_enqueue_time == NOW + timedelta(minutes=60) for m in retries)
    # seats bought: the rescheduled message licenses the guest (the ledger was released)
    graph.skus["sku-g"] = sku(free=3)
    assert (await license_guest("g1", deps)).status == "licensed"
    actions = [a for a, _ in await audit(deps)]
    assert actions.count("license-deferred") == 2 and "alert-no-seats" in actions


async def test_seat_race_at_graph_takes_the_no_seat_path() -> None:
    graph = FakeGraph([accepted()], [sku(free=1)])
    deps = make_deps(graph)
    original = graph.assign_license

    async def taken_meanwhile(user_id: str, sku_id: str, disabled_plans: object = ()) -> None:
        graph.skus[sku_id] = sku(free=0)
        await original(user_id, sku_id)

    graph.assign_license = taken_meanwhile  # type: ignore[method-assign]
    assert (await license_guest("g1", deps)).status == "rescheduled"


async def test_group_mode_adds_the_guest_once_and_needs_no_usage_location() -> None:
    graph = FakeGraph([accepted()], [])
    deps = make_deps(graph, LicensingPolicy(mode="group", group_id="grp"))
    assert (await license_guest("g1", deps)).actions == ("add-to-licensing-group",)
    assert graph.groups["grp"] == {"g1"}
    assert graph.users["g1"].usage_location is None
    assert (await license_guest("g1", deps)).status == "already-done"


async def test_unexpected_graph_error_fails_the_message_and_releases_the_claim() -> None:
    graph = FakeGraph([accepted()], [sku()])
    deps = make_deps(graph)

    async def broken(*args: object, **kwargs: object) -> None:
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    graph.assign_license = broken  # type: ignore[method-assign]
    with pytest.raises(GraphError, match="Insufficient privileges"):
        await license_guest("g1", deps)
    graph.assign_license = FakeGraph.assign_license.__get__(graph)  # type: ignore[method-assign]
    assert (await license_guest("g1", deps)).status == "licensed"  # redelivery can still succeed


async def test_unknown_sku_is_a_configuration_error() -> None:
    graph = FakeGraph([accepted()], [sku()])
    with pytest.raises(NoSuchSku):
        await license_guest("g1", make_deps(graph, LicensingPolicy(mode="sku", sku_part_number="E5")))


async def test_held_claim_asks_for_redelivery() -> None:
    graph = FakeGraph([accepted()], [sku()])
    deps = make_deps(graph)
    await deps.state.claim("license", "g1", POLICY.target, owner="other-worker", lease_seconds=300)
    with pytest.raises(RetryLater):
        await license_guest("g1", deps)
