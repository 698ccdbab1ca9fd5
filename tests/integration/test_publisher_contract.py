"""The publisher port's contract, run against the unit tests' fake and the Service Bus adapter on the local broker.

A service tested on `InMemoryPublisher` (tests/fakes/publisher.py) behaves the same with `ServiceBusPublisher`
in Azure only if both keep the same promises: one delivery per message id and queue, order kept, the envelope
added, typed messages surviving the trip, schedules kept, and a closed publisher refusing to publish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from shared.adapters.queue import ServiceBusPublisher
from shared.domain.messages import (
    GUEST_CHANGES_QUEUE,
    RISK_INCIDENTS_QUEUE,
    LifecycleEvent,
    Message,
    RiskIncident,
    UserChanged,
    decode_message,
    parse_message,
)
from shared.ports.publisher import MessagePublisher, OutgoingMessage, QueueError
from tests.fakes.publisher import InMemoryPublisher
from tests.fixtures.servicebus import BrokerFactory

pytestmark = pytest.mark.timeout(60)

QUEUES = (GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass(frozen=True)
class Delivered:
    message_id: str
    body: dict[str, Any]
    scheduled: datetime | None


@dataclass
class Subject:
    publisher: MessagePublisher
    delivered: Callable[[str], list[Delivered]]
    """What a consumer of the queue would get, in order (scheduled messages included)."""


@pytest.fixture(params=["fake", "servicebus"])
async def subject(request: pytest.FixtureRequest, servicebus_broker_factory: BrokerFactory) -> AsyncIterator[Subject]:
    if request.param == "fake":
        fake = InMemoryPublisher()

        def from_fake(queue: str) -> list[Delivered]:
            return [
                Delivered(m.message_id, decode_message(m.encoded_body()), m.scheduled_enqueue_time)
                for m in fake.messages(queue)
            ]

        yield Subject(fake, from_fake)
        await fake.close()
        return

    broker = servicebus_broker_factory(queues=QUEUES)

    def from_broker(queue: str) -> list[Delivered]:
        with (
            ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as client,
            client.get_queue_receiver(queue) as receiver,
        ):
            peeked = receiver.peek_messages(max_message_count=100)
        return [Delivered(str(m.message_id), decode_message(str(m)), m.scheduled_enqueue_time_utc) for m in peeked]

    publisher = ServiceBusPublisher.from_connection_string(broker.connection_string, retry_total=0)
    yield Subject(publisher, from_broker)
    await publisher.close()


def out(message: Message, message_id: str, **kwargs: Any) -> OutgoingMessage:
    return OutgoingMessage.of(message, message_id=message_id, **kwargs)


INCIDENT = RiskIncident(
    incident_id="inc-1",
    user_id="g1",
    home_tenant_id=TENANT,
    started="2026-01-02T03:04:05+00:00",
    sign_in={"id": "s1", "errorCode": 53011, "riskEventTypes": ["unfamiliarFeatures"]},
    cause="home-tenant-risk",
)


async def test_each_typed_message_arrives_once_with_its_envelope_and_parses_back(subject: Subject) -> None:
    sent: list[Message] = [
        UserChanged("g1", "notification", {"changeType": "updated", "subscriptionId": "sub-1"}),
        LifecycleEvent("sub-1", "reauthorizationRequired"),
    ]
    await subject.publisher.publish_many(GUEST_CHANGES_QUEUE, [out(m, f"m-{i}") for i, m in enumerate(sent)])
    await subject.publisher.publish(RISK_INCIDENTS_QUEUE, out(INCIDENT, "risk-inc-1"))

    guest_changes = subject.delivered(GUEST_CHANGES_QUEUE)
    assert [d.message_id for d in guest_changes] == ["m-0", "m-1"]
    assert [d.body["type"] for d in guest_changes] == ["user-changed", "subscription-lifecycle"]
    assert all(d.body["schemaVersion"] == 1 for d in guest_changes)
    assert [parse_message(d.body) for d in guest_changes] == sent
    [incident] = subject.delivered(RISK_INCIDENTS_QUEUE)
    assert parse_message(incident.body) == INCIDENT


async def test_a_repeated_message_id_is_delivered_once_per_queue(subject: Subject) -> None:
    await subject.publisher.publish(GUEST_CHANGES_QUEUE, out(UserChanged("g1", "delta"), "d:run:g1"))
    await subject.publisher.publish(GUEST_CHANGES_QUEUE, out(UserChanged("g1", "notification"), "d:run:g1"))
    await subject.publisher.publish_many(
        GUEST_CHANGES_QUEUE, [out(UserChanged("g2", "delta"), "d:run:g2"), out(UserChanged("g1", "x"), "d:run:g1")]
    )
    await subject.publisher.publish(RISK_INCIDENTS_QUEUE, out(INCIDENT, "d:run:g1"))  # ids are per queue

    delivered = subject.delivered(GUEST_CHANGES_QUEUE)
    assert [(d.message_id, d.body["source"]) for d in delivered] == [("d:run:g1", "delta"), ("d:run:g2", "delta")]
    assert len(subject.delivered(RISK_INCIDENTS_QUEUE)) == 1


async def test_many_messages_keep_their_order_and_an_empty_batch_is_a_no_op(subject: Subject) -> None:
    batch = [out(UserChanged(f"g{i}", "delta"), f"d:{i}") for i in range(30)]
    await subject.publisher.publish_many(GUEST_CHANGES_QUEUE, batch)
    await subject.publisher.publish_many(GUEST_CHANGES_QUEUE, [])
    assert [d.body["userId"] for d in subject.delivered(GUEST_CHANGES_QUEUE)] == [f"g{i}" for i in range(30)]


async def test_a_scheduled_message_keeps_its_time(subject: Subject) -> None:
    later = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    await subject.publisher.publish(
        GUEST_CHANGES_QUEUE, out(UserChanged("g1", "no-seat-retry"), "g1:no-seat", scheduled_enqueue_time=later)
    )
    [delivered] = subject.delivered(GUEST_CHANGES_QUEUE)
    assert delivered.scheduled is not None
    assert abs((delivered.scheduled - later).total_seconds()) < 0.01


async def test_a_closed_publisher_refuses_and_names_the_queue(subject: Subject) -> None:
    await subject.publisher.close()
    with pytest.raises(QueueError) as info:
        await subject.publisher.publish(GUEST_CHANGES_QUEUE, out(UserChanged("g1", "delta"), "late"))
    assert info.value.queue == GUEST_CHANGES_QUEUE
    assert subject.delivered(GUEST_CHANGES_QUEUE) == []
