"""detect_risk_incidents on fakes: one message per guest incident, overlapping polls, late logs, ignored reasons."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.risk import incident_id
from shared.services.risk_detection import RISK_INCIDENT, DetectionDeps, detect_risk_incidents
from tests.fakes.publisher import InMemoryPublisher
from tests.fakes.state import MemoryStateStore
from tests.unit.risk_fakes import NOW, RESOURCE, FakeRiskGraph, MovingClock, blocked, guest, member

QUEUE = "risk-incidents"


def make(graph: FakeRiskGraph, clock: MovingClock, quiet_minutes: int = 60) -> tuple[DetectionDeps, InMemoryPublisher]:
    publisher = InMemoryPublisher()
    deps = DetectionDeps(
        graph=graph,
        state=MemoryStateStore(clock=clock),
        publisher=publisher,
        queue=QUEUE,
        lookback=timedelta(minutes=30),
        quiet=timedelta(minutes=quiet_minutes),
        clock=clock,
    )
    return deps, publisher


async def test_a_guest_blocked_twice_within_the_quiet_period_is_one_incident_one_message() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()])
    graph.add(blocked("a", NOW - timedelta(minutes=20)), blocked("b", NOW - timedelta(minutes=8)))
    deps, publisher = make(graph, clock)

    outcome = await detect_risk_incidents(deps)

    assert outcome.new_incidents == (incident_id("g1", "a"),)
    [body] = publisher.bodies(QUEUE)
    assert body["type"] == RISK_INCIDENT
    assert (body["userId"], body["incidentId"], body["homeTenantId"]) == (
        "g1",
        incident_id("g1", "a"),
        graph.sign_ins[0].home_tenant_id,
    )
    assert body["signIn"]["errorCode"] == 53011
    assert body["signIn"]["correlationId"] == "corr-a"
    assert "ipAddress" not in body["signIn"]
    [message] = publisher.messages(QUEUE)
    assert message.message_id == f"risk-{incident_id('g1', 'a')}"
    audit = [e async for e in deps.state.query(NOW - timedelta(days=1), action=RISK_INCIDENT)]
    assert [(e.subject, e.outcome) for e in audit] == [("g1", "detected")]


async def test_overlapping_polls_do_not_enqueue_the_incident_again() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()])
    graph.add(blocked("a", NOW - timedelta(minutes=5)))
    deps, publisher = make(graph, clock)
    await detect_risk_incidents(deps)
    clock.advance(minutes=5)
    graph.add(blocked("b", NOW + timedelta(minutes=2)))  # still within the quiet period
    second = await detect_risk_incidents(deps)

    assert second.new_incidents == ()
    assert second.already_seen == 2  # "a" re-read by the overlap, "b" joined the known incident
    assert len(publisher.messages(QUEUE)) == 1
    assert publisher.duplicates == 0  # not even a duplicate publish: state decided
    # the second poll re-read from the first poll's end minus the lookback
    assert graph.windows[1] == (NOW - timedelta(minutes=30), NOW + timedelta(minutes=5))


async def test_a_late_log_is_found_by_the_overlap() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()], lag=timedelta(minutes=10))
    graph.add(blocked("late", NOW - timedelta(minutes=3)))  # happened, but not in the log yet
    deps, publisher = make(graph, clock)
    first = await detect_risk_incidents(deps)
    assert first.new_incidents == ()
    clock.advance(minutes=10)
    second = await detect_risk_incidents(deps)
    assert second.new_incidents == (incident_id("g1", "late"),)
    assert len(publisher.messages(QUEUE)) == 1


async def test_a_block_after_the_quiet_period_is_a_new_incident() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()])
    graph.add(blocked("a", NOW - timedelta(minutes=1)))
    deps, publisher = make(graph, clock, quiet_minutes=20)
    await detect_risk_incidents(deps)
    clock.advance(minutes=25)
    graph.add(blocked("b", clock.now - timedelta(minutes=1)))
    second = await detect_risk_incidents(deps)
    assert second.new_incidents == (incident_id("g1", "b"),)
    assert [m["incidentId"] for m in publisher.bodies(QUEUE)] == [incident_id("g1", "a"), incident_id("g1", "b")]


async def test_members_and_non_risk_failures_are_ignored_and_counted() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest(), member("m1"), guest("gone-soon")])
    at = NOW - timedelta(minutes=5)
    graph.add(
        blocked("m", at, user_id="m1"),  # a member from another tenant (e.g. a converted guest): userType decides
        blocked("w", at, code=50126),
        blocked("x", at, code=500212),
        blocked("l", at, code=50053),
        blocked("s", at, code=0),
        blocked("ca", at, code=53003),  # CA block without risk
        blocked("own", at, user_id="m1", home=RESOURCE),  # our own member
        blocked("nobody", at, user_id="deleted-user"),
    )
    deps, publisher = make(graph, clock)
    outcome = await detect_risk_incidents(deps)
    assert outcome.new_incidents == ()
    assert publisher.messages(QUEUE) == []
    assert outcome.ignored == {
        "conditional-access-without-risk": 1,
        "cross-tenant-access-policy": 1,
        "locked-or-malicious-ip": 1,
        "member": 1,
        "same-tenant-sign-in": 1,
        "success": 1,
        "user-not-found": 1,
        "wrong-password": 1,
    }


async def test_each_guest_is_read_once_per_poll() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()])
    graph.add(*(blocked(f"s{i}", NOW - timedelta(minutes=i)) for i in range(1, 6)))
    deps, _ = make(graph, clock)
    outcome = await detect_risk_incidents(deps)
    assert graph.user_reads == 1
    assert outcome.sign_ins == 5
    assert len(outcome.new_incidents) == 1


async def test_watermark_moves_to_the_end_of_the_window() -> None:
    clock = MovingClock()
    graph = FakeRiskGraph(clock, [guest()])
    deps, _ = make(graph, clock)
    first = await detect_risk_incidents(deps)
    assert (first.since, first.until, first.watermark_moved) == (NOW - timedelta(minutes=30), NOW, True)
    record = await deps.state.get("risk-detection", "signins-watermark")
    assert record is not None and record.value == {"until": NOW.isoformat()}
