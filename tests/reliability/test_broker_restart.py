"""The local broker restarts like a Service Bus namespace: same endpoint, messages kept, clients reconnect."""

from __future__ import annotations

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from local.servicebus_broker import QueueOptions
from tests.fixtures.servicebus import BrokerFactory

pytestmark = pytest.mark.timeout(120)


async def test_restart_keeps_messages_and_redelivers_what_a_lost_connection_held(
    servicebus_broker_factory: BrokerFactory,
) -> None:
    broker = servicebus_broker_factory(queues={"work": QueueOptions(lock_duration_s=2, max_delivery_count=5)})
    port = broker.port
    client = ServiceBusClient.from_connection_string(broker.connection_string, retry_total=10, retry_backoff_factor=0.2)
    async with client:
        sender = client.get_queue_sender("work")
        async with sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}", message_id=f"m{i}") for i in range(5)])
            receiver = client.get_queue_receiver("work", prefetch_count=0)
            async with receiver:
                [held] = await receiver.receive_messages(max_message_count=1, max_wait_time=30)
                broker.restart()
                assert broker.port == port
                assert broker.queue_counts("work")["available"] + broker.queue_counts("work")["locked"] == 5
                with pytest.raises(ServiceBusError):
                    await receiver.complete_message(held)  # its lock died with the connection
            # the same sender keeps working after the restart (the SDK reconnects on its own)
            await sender.send_messages(ServiceBusMessage("m5", message_id="m5"))
            await sender.send_messages(ServiceBusMessage("m0-again", message_id="m0"))  # duplicate detection kept
        received: list[str] = []
        async with client.get_queue_receiver("work", prefetch_count=0) as fresh:
            while len(received) < 6:
                batch = await fresh.receive_messages(max_message_count=6, max_wait_time=30)
                assert batch, f"only {sorted(received)} came back"
                for message in batch:
                    received.append(str(message))
                    await fresh.complete_message(message)
    assert sorted(received) == [f"m{i}" for i in range(6)]
    assert broker.queue_counts("work") == {"available": 0, "locked": 0, "scheduled": 0, "dead_lettered": 0}
