"""ServiceBusPublisher (azure-servicebus aio) against the local broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusClient

from local.servicebus_broker import LocalServiceBusBroker
from shared.adapters.queue import ServiceBusPublisher
from shared.domain.messages import decode_message
from shared.ports.publisher import OutgoingMessage, QueueError

pytestmark = pytest.mark.timeout(30)

Q = "guest-accepted"


def accepted(message_id: str, user: str = "u1", **kwargs: object) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, type="guest.accepted", body={"userId": user}, **kwargs)  # type: ignore[arg-type]


def peek_all(broker: LocalServiceBusBroker, queue: str = Q) -> list[object]:
    with (
        ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0) as sb,
        sb.get_queue_receiver(queue) as receiver,
    ):
        return list(receiver.peek_messages(max_message_count=50))


async def test_publish_sets_id_type_schema_version_and_properties(
    servicebus_broker: LocalServiceBusBroker,
) -> None:
    async with ServiceBusPublisher.from_connection_string(servicebus_broker.connection_string) as publisher:
        await publisher.publish(
            Q,
            accepted("sub-1:user-1:42", correlation_id="corr", application_properties={"attempt": 1}),
        )
    [msg] = peek_all(servicebus_broker)
    assert msg.message_id == "sub-1:user-1:42"  # type: ignore[attr-defined]
    assert msg.correlation_id == "corr"  # type: ignore[attr-defined]
    assert msg.subject == "guest.accepted"  # type: ignore[attr-defined]
    assert msg.content_type == "application/json"  # type: ignore[attr-defined]
    assert msg.application_properties == {b"attempt": 1}  # type: ignore[attr-defined]
    body = decode_message(str(msg))
    assert body == {"userId": "u1", "type": "guest.accepted", "schemaVersion": 1}


async def test_duplicates_collapse_and_publish_many_batches(servicebus_broker: LocalServiceBusBroker) -> None:
    async with ServiceBusPublisher.from_connection_string(servicebus_broker.connection_string) as publisher:
        await publisher.publish(Q, accepted("m-1"))
        await publisher.publish(Q, accepted("m-1", user="again"))
        await publisher.publish_many(Q, [accepted(f"m-{i}", user=f"u{i}") for i in range(1, 6)])
        await publisher.publish_many(Q, [])
    assert servicebus_broker.queue_depth(Q) == 5
    assert servicebus_broker.stats[Q]["duplicates"] == 2
    users = [json.loads(str(m))["userId"] for m in peek_all(servicebus_broker)]
    assert users == ["u1", "u2", "u3", "u4", "u5"]


async def test_scheduled_message_waits_for_its_time(servicebus_broker: LocalServiceBusBroker) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    async with ServiceBusPublisher.from_connection_string(servicebus_broker.connection_string) as publisher:
        await publisher.publish(Q, accepted("retry-1", scheduled_enqueue_time=later))
        await publisher.publish_many(Q, [accepted("retry-2", scheduled_enqueue_time=later), accepted("now-1")])
    counts = servicebus_broker.queue_counts(Q)
    assert (counts["scheduled"], counts["available"]) == (2, 1)
    scheduled = [m for m in peek_all(servicebus_broker) if m.message_id.startswith("retry")]  # type: ignore[attr-defined]
    assert len(scheduled) == 2
    for m in scheduled:
        assert abs((m.scheduled_enqueue_time_utc - later).total_seconds()) < 0.01  # type: ignore[attr-defined]


async def test_unknown_queue_raises_queue_error(servicebus_broker: LocalServiceBusBroker) -> None:
    async with ServiceBusPublisher.from_connection_string(
        servicebus_broker.connection_string, retry_total=0
    ) as publisher:
        with pytest.raises(QueueError) as info:
            await publisher.publish("no-such-queue", accepted("x"))
        assert info.value.queue == "no-such-queue"
        assert "no-such-queue" in info.value.reason
        await publisher.publish(Q, accepted("still-works"))  # the failure did not poison the client
    assert servicebus_broker.queue_depth(Q) == 1


async def test_closed_publisher_refuses(servicebus_broker: LocalServiceBusBroker) -> None:
    publisher = ServiceBusPublisher.from_connection_string(servicebus_broker.connection_string)
    await publisher.close()
    await publisher.close()  # idempotent
    with pytest.raises(QueueError, match="closed"):
        await publisher.publish(Q, accepted("late"))


async def test_broker_gone_raises_queue_error(servicebus_broker_factory) -> None:
    broker = servicebus_broker_factory()
    conn = broker.connection_string
    broker.stop()
    async with ServiceBusPublisher.from_connection_string(conn, retry_total=0) as publisher:
        with pytest.raises(QueueError) as info:
            await publisher.publish(Q, accepted("x"))
    assert info.value.queue == Q


async def test_a_burst_of_concurrent_publishes_lands_every_message(servicebus_broker: LocalServiceBusBroker) -> None:
    """The webhook publishes from many concurrent requests through one publisher: none may be lost, and the
    SDK must not open a connection per call (it did, until sends were serialized per sender)."""
    import asyncio

    async with ServiceBusPublisher.from_connection_string(servicebus_broker.connection_string) as publisher:
        await asyncio.gather(*(publisher.publish_many(Q, [accepted(f"burst-{i}", f"u{i}")]) for i in range(600)))
    assert servicebus_broker.queue_depth(Q) == 600
