"""The local broker driven by the real azure-servicebus SDK (sync and aio), one behaviour per test."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import (
    MessageLockLostError,
    MessagingEntityNotFoundError,
    ServiceBusError,
)

from local.graph_sim.clock import SimClock
from local.servicebus_broker import LocalServiceBusBroker, QueueOptions

pytestmark = pytest.mark.timeout(30)

Q = "test-queue"


def client(broker: LocalServiceBusBroker) -> ServiceBusClient:
    # keep_alive=0: no SDK keep-alive thread, whose 1 s sleep would slow every close down.
    return ServiceBusClient.from_connection_string(broker.connection_string, retry_total=0, keep_alive=0)


def send(broker: LocalServiceBusBroker, *messages: ServiceBusMessage, queue: str = Q) -> None:
    with client(broker) as sb, sb.get_queue_sender(queue, keep_alive=0) as sender:
        sender.send_messages(list(messages) if len(messages) > 1 else messages[0])


# -- send / receive ---------------------------------------------------------------------------------------


def test_send_single_then_peek_lock_receive_and_complete(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage('{"x": 1}', message_id="m-1", application_properties={"k": "v"}))
    assert servicebus_broker.queue_depth(Q) == 1

    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        [msg] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert str(msg) == '{"x": 1}'
        assert msg.message_id == "m-1"
        assert msg.application_properties == {b"k": b"v"}
        assert msg.sequence_number == 1
        assert msg.delivery_count == 0
        assert msg.enqueued_time_utc is not None
        assert msg.locked_until_utc is not None and msg.locked_until_utc > datetime.now(UTC)
        assert msg.lock_token is not None
        assert servicebus_broker.queue_counts(Q)["locked"] == 1
        receiver.complete_message(msg)

    assert servicebus_broker.queue_depth(Q) == 0
    assert servicebus_broker.stats[Q]["completed"] == 1


def test_batch_send_delivers_each_message_in_order(servicebus_broker: LocalServiceBusBroker) -> None:
    with client(servicebus_broker) as sb, sb.get_queue_sender(Q, keep_alive=0) as sender:
        batch = sender.create_message_batch()
        for i in range(5):
            batch.add_message(ServiceBusMessage(f"body-{i}", message_id=f"b-{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage("list-0"), ServiceBusMessage("list-1")])

    assert servicebus_broker.queue_depth(Q) == 7
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        got: list[str] = []
        while len(got) < 7:
            batch_in = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            assert batch_in, "broker stopped delivering"
            for msg in batch_in:
                got.append(str(msg))
                receiver.complete_message(msg)
    assert got == [f"body-{i}" for i in range(5)] + ["list-0", "list-1"]


def test_abandon_redelivers_with_delivery_count_plus_one(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("again", message_id="a-1"))
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        [first] = receiver.receive_messages(max_wait_time=5)
        receiver.abandon_message(first)
        [second] = receiver.receive_messages(max_wait_time=5)
        assert second.message_id == "a-1"
        assert first.delivery_count is not None
        assert second.delivery_count == first.delivery_count + 1 == 1
        assert second.sequence_number == first.sequence_number
        receiver.complete_message(second)
    assert servicebus_broker.stats[Q]["abandoned"] == 1


def test_dead_letter_with_reason_is_readable_from_the_dlq(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("bad input", message_id="d-1"))
    with client(servicebus_broker) as sb:
        with sb.get_queue_receiver(Q) as receiver:
            [msg] = receiver.receive_messages(max_wait_time=5)
            receiver.dead_letter_message(msg, reason="MalformedMessage", error_description="schemaVersion missing")
        assert servicebus_broker.queue_depth(Q) == 0

        with sb.get_queue_receiver(Q, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            [dead] = dlq.receive_messages(max_wait_time=5)
            assert dead.message_id == "d-1"
            assert str(dead) == "bad input"
            assert dead.dead_letter_reason == "MalformedMessage"
            assert dead.dead_letter_error_description == "schemaVersion missing"
            dlq.complete_message(dead)

    assert servicebus_broker.stats[Q]["dead_lettered"] == 1
    assert servicebus_broker.dead_letters(Q) == []


def test_receive_and_delete_removes_on_delivery(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("one"), ServiceBusMessage("two"))
    with (
        client(servicebus_broker) as sb,
        sb.get_queue_receiver(Q, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver,
    ):
        got: list[str] = []
        while len(got) < 2:
            got += [str(m) for m in receiver.receive_messages(max_message_count=2, max_wait_time=3)]
    assert got == ["one", "two"]
    assert servicebus_broker.queue_depth(Q) == 0
    assert servicebus_broker.stats[Q]["received_and_deleted"] == 2


def test_peek_browses_without_locking(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("p1"), ServiceBusMessage("p2"))
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        peeked = receiver.peek_messages(max_message_count=5)
        assert [str(m) for m in peeked] == ["p1", "p2"]
        assert [m.sequence_number for m in peeked] == [1, 2]
        assert receiver.peek_messages(max_message_count=5, sequence_number=10) == []
    assert servicebus_broker.queue_counts(Q) == {"available": 2, "locked": 0, "scheduled": 0, "dead_lettered": 0}


# -- scheduling -------------------------------------------------------------------------------------------


def test_scheduled_message_appears_only_after_its_time(
    servicebus_broker: LocalServiceBusBroker, servicebus_clock: SimClock
) -> None:
    with (
        client(servicebus_broker) as sb,
        sb.get_queue_sender(Q, keep_alive=0) as sender,
        sb.get_queue_receiver(Q) as receiver,
    ):
        due = servicebus_clock.now() + timedelta(seconds=1.5)
        [seq] = sender.schedule_messages(ServiceBusMessage("later", message_id="s-1"), due)
        sender.send_messages(ServiceBusMessage("annotated", scheduled_enqueue_time_utc=due))
        assert seq == 1
        servicebus_broker.wait_for_timer_pass()  # the broker has looked at the time: not due yet
        assert servicebus_broker.queue_counts(Q)["scheduled"] == 2
        assert receiver.receive_messages(max_wait_time=0.5) == []
        servicebus_clock.advance(timedelta(seconds=1.5))
        servicebus_broker.wait_for_timer_pass()
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            for msg in receiver.receive_messages(max_message_count=2, max_wait_time=2):
                assert msg.enqueued_time_utc is not None
                assert msg.enqueued_time_utc >= due - timedelta(milliseconds=100)
                got.append(str(msg))
                receiver.complete_message(msg)
    assert servicebus_clock.now() >= due
    assert sorted(got) == ["annotated", "later"]


def test_cancel_scheduled_message(servicebus_broker: LocalServiceBusBroker, servicebus_clock: SimClock) -> None:
    due = servicebus_clock.now() + timedelta(seconds=1)
    with client(servicebus_broker) as sb:
        with sb.get_queue_sender(Q, keep_alive=0) as sender:
            [keep, drop] = sender.schedule_messages([ServiceBusMessage("keep"), ServiceBusMessage("drop")], due)
            sender.cancel_scheduled_messages(drop)
            with pytest.raises(ServiceBusError):
                sender.cancel_scheduled_messages(drop)  # gone: a clear not-found, not a hang
        assert servicebus_broker.queue_counts(Q)["scheduled"] == 1
        servicebus_clock.advance(timedelta(seconds=1))
        servicebus_broker.wait_for_timer_pass()
        with sb.get_queue_receiver(Q) as receiver:
            got: list[ServiceBusReceivedMessage] = []
            deadline = time.monotonic() + 8
            while not got and time.monotonic() < deadline:
                got = receiver.receive_messages(max_wait_time=2)
            assert [(str(m), m.sequence_number) for m in got] == [("keep", keep)]
            receiver.complete_message(got[0])
    assert servicebus_broker.stats[Q]["cancelled"] == 1


# -- locks ------------------------------------------------------------------------------------------------


def test_lock_renewal_extends_the_lock(servicebus_broker: LocalServiceBusBroker, servicebus_clock: SimClock) -> None:
    send(servicebus_broker, ServiceBusMessage("renew me"))
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        [msg] = receiver.receive_messages(max_wait_time=5)
        first_until = msg.locked_until_utc
        assert first_until is not None
        servicebus_clock.advance(timedelta(seconds=1.2))
        renewed = receiver.renew_message_lock(msg)
        assert renewed > first_until
        servicebus_clock.advance(timedelta(seconds=0.9))  # 2.1 s: past the original 2 s lock, still ours (renewed)
        servicebus_broker.wait_for_timer_pass()  # an unrenewed lock would have expired in this pass
        receiver.complete_message(msg)
    assert servicebus_broker.stats[Q].get("lock_expired", 0) == 0
    assert servicebus_broker.queue_depth(Q) == 0


def test_lock_expiry_redelivers_with_delivery_count_plus_one(
    servicebus_broker: LocalServiceBusBroker, servicebus_clock: SimClock
) -> None:
    send(servicebus_broker, ServiceBusMessage("slow consumer", message_id="e-1"))
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        [first] = receiver.receive_messages(max_wait_time=5)
        servicebus_clock.advance(timedelta(seconds=2))  # the 2 s lock runs out
        servicebus_broker.wait_for_timer_pass()
        again: list[ServiceBusReceivedMessage] = []
        deadline = time.monotonic() + 8
        while not again and time.monotonic() < deadline:
            again = receiver.receive_messages(max_wait_time=1)
        [second] = again
        assert second.message_id == "e-1"
        assert second.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        receiver.complete_message(second)
    assert servicebus_broker.stats[Q]["lock_expired"] == 1


def test_poison_message_reaches_the_dlq_after_max_delivery_count(servicebus_broker_factory) -> None:
    broker = servicebus_broker_factory(queues={Q: QueueOptions(max_delivery_count=3)})
    send(broker, ServiceBusMessage("poison", message_id="p-1"))
    with client(broker) as sb:
        with sb.get_queue_receiver(Q) as receiver:
            for attempt in range(3):
                [msg] = receiver.receive_messages(max_wait_time=5)
                assert msg.delivery_count == attempt
                receiver.abandon_message(msg)
            assert receiver.receive_messages(max_wait_time=0.5) == []
        with sb.get_queue_receiver(Q, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            [dead] = dlq.receive_messages(max_wait_time=5)
            assert dead.message_id == "p-1"
            assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            assert dead.dead_letter_error_description
    [record] = broker.dead_letters(Q)
    assert record["reason"] == "MaxDeliveryCountExceeded"


# -- duplicates and errors --------------------------------------------------------------------------------


def test_duplicate_message_ids_collapse(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("first", message_id="dup-1"))
    send(servicebus_broker, ServiceBusMessage("second", message_id="dup-1"))
    send(servicebus_broker, ServiceBusMessage("other", message_id="dup-2"))
    assert servicebus_broker.queue_depth(Q) == 2
    assert servicebus_broker.stats[Q]["duplicates"] == 1
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        assert [str(m) for m in receiver.peek_messages(max_message_count=5)] == ["first", "other"]


def test_duplicate_window_is_per_queue(servicebus_broker_factory, servicebus_clock: SimClock) -> None:
    broker = servicebus_broker_factory(duplicate_window_s=0.3, clock=servicebus_clock)
    send(broker, ServiceBusMessage("a", message_id="same"))
    send(broker, ServiceBusMessage("a", message_id="same"), queue="guest-accepted")
    servicebus_clock.advance(timedelta(seconds=0.5))
    send(broker, ServiceBusMessage("a", message_id="same"))  # window passed: accepted again
    assert broker.queue_depth(Q) == 2
    assert broker.queue_depth("guest-accepted") == 1


def test_unknown_queue_is_a_clear_error_not_a_hang(servicebus_broker: LocalServiceBusBroker) -> None:
    started = time.monotonic()
    with client(servicebus_broker) as sb:
        with (
            pytest.raises(MessagingEntityNotFoundError, match="no-such-queue"),
            sb.get_queue_sender("no-such-queue", keep_alive=0) as sender,
        ):
            sender.send_messages(ServiceBusMessage("x"))
        with pytest.raises(MessagingEntityNotFoundError), sb.get_queue_receiver("no-such-queue") as receiver:
            receiver.receive_messages(max_wait_time=1)
    assert time.monotonic() - started < 10


def test_unsupported_management_operation_is_a_clear_error(servicebus_broker: LocalServiceBusBroker) -> None:
    started = time.monotonic()
    with (
        client(servicebus_broker) as sb,
        sb.get_queue_receiver(Q) as receiver,
        pytest.raises(ServiceBusError, match="receive-by-sequence-number"),
    ):
        receiver.receive_deferred_messages([1])
    assert time.monotonic() - started < 10


# -- aio --------------------------------------------------------------------------------------------------


async def test_aio_client_send_receive_abandon_dead_letter(servicebus_broker: LocalServiceBusBroker) -> None:
    async with AsyncServiceBusClient.from_connection_string(servicebus_broker.connection_string) as sb:
        async with sb.get_queue_sender("guest-accepted", keep_alive=0) as sender:
            await sender.send_messages([ServiceBusMessage("a1", message_id="x1"), ServiceBusMessage("a2")])
            await sender.send_messages(ServiceBusMessage("a1-dup", message_id="x1"))
        async with sb.get_queue_receiver("guest-accepted") as receiver:
            got: list[ServiceBusReceivedMessage] = []
            while len(got) < 2:
                got += await receiver.receive_messages(max_message_count=2, max_wait_time=3)
            first, second = got
            assert [str(first), str(second)] == ["a1", "a2"]
            await receiver.abandon_message(first)
            await receiver.dead_letter_message(second, reason="r", error_description="d")
            [again] = await receiver.receive_messages(max_wait_time=5)
            assert again.delivery_count == 1
            renewed = await receiver.renew_message_lock(again)
            assert renewed is not None
            await receiver.complete_message(again)
        async with sb.get_queue_receiver("guest-accepted", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            [dead] = await dlq.receive_messages(max_wait_time=5)
            assert (dead.dead_letter_reason, dead.dead_letter_error_description) == ("r", "d")
            await dlq.complete_message(dead)
    assert servicebus_broker.queue_depth("guest-accepted") == 0


async def test_aio_schedule_and_cancel(servicebus_broker: LocalServiceBusBroker) -> None:
    due = datetime.now(UTC) + timedelta(seconds=30)
    async with (
        AsyncServiceBusClient.from_connection_string(servicebus_broker.connection_string) as sb,
        sb.get_queue_sender("risk-incidents", keep_alive=0) as sender,
    ):
        numbers = await sender.schedule_messages([ServiceBusMessage("r1"), ServiceBusMessage("r2")], due)
        assert servicebus_broker.queue_counts("risk-incidents")["scheduled"] == 2
        await sender.cancel_scheduled_messages(numbers)
    assert servicebus_broker.queue_counts("risk-incidents")["scheduled"] == 0


async def test_aio_unknown_queue_fails_fast(servicebus_broker: LocalServiceBusBroker) -> None:
    async with AsyncServiceBusClient.from_connection_string(servicebus_broker.connection_string) as sb:
        with pytest.raises(MessagingEntityNotFoundError):
            async with sb.get_queue_sender("missing", keep_alive=0) as sender:
                await sender.send_messages(ServiceBusMessage("x"))


# -- lifecycle --------------------------------------------------------------------------------------------


def test_stop_closes_the_port_and_the_thread() -> None:
    import socket
    import threading

    before = set(threading.enumerate())
    with LocalServiceBusBroker(["q"]) as broker:
        port = broker.port
        send(broker, ServiceBusMessage("x"), queue="q")
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_deferral_is_refused_clearly_and_the_message_stays(servicebus_broker: LocalServiceBusBroker) -> None:
    send(servicebus_broker, ServiceBusMessage("keep me"))
    with client(servicebus_broker) as sb, sb.get_queue_receiver(Q) as receiver:
        [msg] = receiver.receive_messages(max_wait_time=5)
        with pytest.raises(ServiceBusError, match="deferral is not supported"):
            receiver.defer_message(msg)
        [again] = receiver.receive_messages(max_wait_time=5)
        assert (str(again), again.delivery_count) == ("keep me", 0)
        receiver.complete_message(again)
