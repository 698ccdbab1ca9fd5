"""The dispatcher: each typed message reaches its use case, and nothing else does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.messages import (
    GUEST_CHANGES_QUEUE,
    RISK_INCIDENTS_QUEUE,
    LifecycleEvent,
    MalformedMessage,
    RiskIncident,
    UserChanged,
)
from shared.ports.publisher import OutgoingMessage
from shared.services import dispatch as dispatcher
from shared.services.conversion import ReviewOutcome
from shared.services.delta import DeltaOutcome
from shared.services.licensing import LicenseOutcome
from shared.services.risk_response import ResponseOutcome

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class Recorder:
    """Use cases that record what they were asked to do (the deps are opaque tokens here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def licensing(self) -> Any:
        return "licensing-deps"

    def subscriptions(self) -> Any:
        return "subscription-deps"

    def delta(self) -> Any:
        return "delta-deps"

    def risk_response(self) -> Any:
        return "risk-deps"

    def conversion(self) -> Any:
        return "conversion-deps"


@pytest.fixture
def use_cases(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()

    async def license_guest(user_id: str, deps: Any, correlation_id: str) -> LicenseOutcome:
        recorder.calls.append(("license", (user_id, deps, correlation_id)))
        return LicenseOutcome("licensed", actions=("assign-license",))

    async def review_user_change(user_id: str, deps: Any, correlation_id: str) -> ReviewOutcome:
        recorder.calls.append(("review", (user_id, deps, correlation_id)))
        return ReviewOutcome("converted", "userType changed from Guest to Member")

    async def handle_lifecycle_event(message: LifecycleEvent, deps: Any) -> str:
        recorder.calls.append(("lifecycle", (message.lifecycle_event, deps)))
        return "reauthorized"

    async def run_delta_backstop(deps: Any) -> DeltaOutcome:
        recorder.calls.append(("delta", deps))
        return DeltaOutcome("synced", pages=1, changed=2, enqueued=1)

    async def respond_to_incident(message: RiskIncident, deps: Any, correlation_id: str) -> ResponseOutcome:
        recorder.calls.append(("respond", (message.incident_id, deps, correlation_id)))
        return ResponseOutcome("sent", "opened")

    for name, fake in [
        ("license_guest", license_guest),
        ("review_user_change", review_user_change),
        ("handle_lifecycle_event", handle_lifecycle_event),
        ("run_delta_backstop", run_delta_backstop),
        ("respond_to_incident", respond_to_incident),
    ]:
        monkeypatch.setattr(dispatcher, name, fake)
    return recorder


def wire(message: UserChanged | LifecycleEvent | RiskIncident) -> bytes:
    return OutgoingMessage.of(message, message_id="m").encoded_body().encode()


INCIDENT = RiskIncident("inc-1", "g1", TENANT, "2026-01-01T00:00:00+00:00", {"id": "s1"})


async def test_a_user_change_licenses_that_user_then_reviews_it_for_a_conversion(use_cases: Recorder) -> None:
    message = dispatcher.receive(GUEST_CHANGES_QUEUE, wire(UserChanged("g7", "notification")))
    summary = await dispatcher.dispatch(message, use_cases, "corr-1")
    assert use_cases.calls == [
        ("license", ("g7", "licensing-deps", "corr-1")),
        ("review", ("g7", "conversion-deps", "corr-1")),
    ]
    assert "g7" in summary and "licensed" in summary and "converted" in summary


@pytest.mark.parametrize("event", ["missed", "subscriptionRemoved"])
async def test_lost_notifications_run_the_delta_backstop(use_cases: Recorder, event: str) -> None:
    message = dispatcher.receive(GUEST_CHANGES_QUEUE, wire(LifecycleEvent("sub-1", event)))
    summary = await dispatcher.dispatch(message, use_cases)
    assert use_cases.calls == [("lifecycle", (event, "subscription-deps")), ("delta", "delta-deps")]
    assert "delta backstop synced" in summary


async def test_reauthorization_does_not_run_the_backstop(use_cases: Recorder) -> None:
    message = dispatcher.receive(GUEST_CHANGES_QUEUE, wire(LifecycleEvent("sub-1", "reauthorizationRequired")))
    await dispatcher.dispatch(message, use_cases)
    assert use_cases.calls == [("lifecycle", ("reauthorizationRequired", "subscription-deps"))]


async def test_a_risk_incident_is_answered(use_cases: Recorder) -> None:
    message = dispatcher.receive(RISK_INCIDENTS_QUEUE, wire(INCIDENT))
    summary = await dispatcher.dispatch(message, use_cases, "corr-2")
    assert use_cases.calls == [("respond", ("inc-1", "risk-deps", "corr-2"))]
    assert summary == "risk incident inc-1: notice sent, ticket opened"


@pytest.mark.parametrize(
    ("queue", "body", "reason"),
    [
        (RISK_INCIDENTS_QUEUE, wire(UserChanged("g1", "delta")), "does not belong on risk-incidents"),
        (GUEST_CHANGES_QUEUE, wire(INCIDENT), "does not belong on guest-changes"),
        (GUEST_CHANGES_QUEUE, json.dumps({"type": "guest.accepted", "schemaVersion": 1}).encode(), "unknown message"),
        (GUEST_CHANGES_QUEUE, json.dumps({"type": "user-changed", "schemaVersion": 1}).encode(), "without userId"),
        (GUEST_CHANGES_QUEUE, json.dumps({"type": "user-changed", "schemaVersion": 2, "userId": "g"}).encode(), "2"),
        (RISK_INCIDENTS_QUEUE, b"\xff", "not UTF-8"),
    ],
)
async def test_a_message_that_is_not_for_this_queue_fails_with_its_reason(
    use_cases: Recorder, queue: str, body: bytes, reason: str
) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        dispatcher.receive(queue, body)
    assert use_cases.calls == []


@pytest.mark.parametrize(
    "message",
    [
        UserChanged("g1", "notification", {"changeType": "updated", "subscriptionId": "s"}),
        LifecycleEvent("sub-1", "missed"),
        INCIDENT,
    ],
)
def test_every_message_type_survives_the_wire(message: UserChanged | LifecycleEvent | RiskIncident) -> None:
    assert dispatcher.receive(message.QUEUE, wire(message)) == message
