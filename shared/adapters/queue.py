"""The Service Bus adapter of the publisher port (shared/ports/publisher.py).

`ServiceBusPublisher` uses azure-servicebus (aio); locally the same adapter talks to local/servicebus_broker,
because only the connection setting differs. The message's type also becomes the Service Bus `subject`, so
operators see it in Service Bus Explorer without opening the body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import ServiceBusError

from shared.ports.publisher import MessagePublisher, OutgoingMessage, QueueError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

CONTENT_TYPE = "application/json"


def to_servicebus_message(message: OutgoingMessage) -> ServiceBusMessage:
    props: dict[str | bytes, Any] = {key: value for key, value in message.application_properties.items()}
    return ServiceBusMessage(
        message.encoded_body(),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        subject=message.type,
        content_type=CONTENT_TYPE,
        application_properties=props or None,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time,
    )


class ServiceBusPublisher(MessagePublisher):
    """Azure Service Bus adapter: one client, one sender per queue, opened lazily and reused."""

    def __init__(self, client: ServiceBusClient) -> None:
        self._client = client
        self._senders: dict[str, ServiceBusSender] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    @classmethod
    def from_connection_string(cls, connection_string: str, **client_options: Any) -> ServiceBusPublisher:
        """Shared-key or emulator connection string (the local broker prints one)."""
        return cls(ServiceBusClient.from_connection_string(connection_string, **client_options))

    @classmethod
    def from_namespace(
        cls, fully_qualified_namespace: str, credential: AsyncTokenCredential, **client_options: Any
    ) -> ServiceBusPublisher:
        """`<name>.servicebus.windows.net` with an azure-identity credential (managed identity in Azure)."""
        return cls(ServiceBusClient(fully_qualified_namespace, credential, **client_options))

    def _sender(self, queue: str) -> ServiceBusSender:
        if self._closed:
            raise QueueError(queue, "publisher is closed")
        sender = self._senders.get(queue)
        if sender is None:
            sender = self._client.get_queue_sender(queue)
            self._senders[queue] = sender
        return sender

    def _lock(self, queue: str) -> asyncio.Lock:
        """One send at a time per sender. The SDK's async sender is not safe for concurrent sends: a burst of
        concurrent webhook calls made it open a connection per call (hundreds) and tear them down. Callers
        batch instead (one webhook POST = one batch)."""
        return self._locks.setdefault(queue, asyncio.Lock())

    async def publish(self, queue: str, message: OutgoingMessage) -> None:
        await self.publish_many(queue, [message])

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        async with self._lock(queue):
            await self._send_batches(queue, messages)

    async def _send_batches(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        sender = self._sender(queue)
        try:
            batch = await sender.create_message_batch()
            for message in messages:
                sb_message = to_servicebus_message(message)
                try:
                    batch.add_message(sb_message)
                except ValueError:  # MessageSizeExceededError: this batch is full
                    if len(batch) == 0:
                        raise
                    await sender.send_messages(batch)
                    batch = await sender.create_message_batch()
                    batch.add_message(sb_message)
            if len(batch):
                await sender.send_messages(batch)
        except (ServiceBusError, ValueError) as exc:
            await self._drop_sender(queue)
            raise QueueError(queue, _reason(exc)) from exc

    async def _drop_sender(self, queue: str) -> None:
        """A failed sender is discarded so the next publish starts from a fresh link."""
        sender = self._senders.pop(queue, None)
        if sender is not None:
            with contextlib.suppress(ServiceBusError):
                await sender.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            with contextlib.suppress(ServiceBusError):
                await sender.close()
        await self._client.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


__all__ = ["ServiceBusPublisher", "to_servicebus_message"]
