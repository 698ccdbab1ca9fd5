"""The queue port: publish JSON work items to a named queue, and read them back safely.

Services depend on `MessagePublisher` only. `ServiceBusPublisher` is the Azure adapter (azure-servicebus,
aio); locally the same adapter talks to local/servicebus_broker, because only the connection setting
differs. `InMemoryPublisher` is the fake for the service layer's unit tests.

Every message carries a caller-chosen, deterministic message id: Service Bus duplicate detection then
collapses a re-sent work item (a retried webhook, an overlapping poll) into one delivery. Every body is a
JSON object with `"type"` and `"schemaVersion"`, which `decode_message` checks on the way in, so a
queue-triggered function can dead-letter input it does not understand instead of crashing on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import ServiceBusError

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

SCHEMA_VERSION = 1
MAX_MESSAGE_ID_LENGTH = 128  # Service Bus rejects longer message ids
CONTENT_TYPE = "application/json"

PropertyValue = str | int | float | bool


class QueueError(Exception):
    """Publishing to a queue failed; names the queue and why."""

    def __init__(self, queue: str, reason: str) -> None:
        self.queue = queue
        self.reason = reason
        super().__init__(f"queue {queue!r}: {reason}")


class MalformedMessage(ValueError):
    """A received body is not a message this app understands; `reason` is fit for a dead-letter reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class OutgoingMessage:
    """One work item. `message_id` must be derived from the work (not random) so duplicates collapse."""

    message_id: str
    type: str
    body: Mapping[str, Any]
    scheduled_enqueue_time: datetime | None = None
    correlation_id: str | None = None
    application_properties: Mapping[str, PropertyValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.message_id or len(self.message_id) > MAX_MESSAGE_ID_LENGTH:
            raise ValueError(f"message_id must be 1-{MAX_MESSAGE_ID_LENGTH} characters, got {self.message_id!r}")
        if not self.type:
            raise ValueError("type must be a non-empty string")
        when = self.scheduled_enqueue_time
        if when is not None and (when.tzinfo is None or when.utcoffset() is None):
            raise ValueError("scheduled_enqueue_time must be timezone-aware")
        if "schemaVersion" in self.body or "type" in self.body:
            raise ValueError("body must not set 'type' or 'schemaVersion': the envelope owns them")

    def encoded_body(self) -> str:
        """The JSON text that goes on the wire: the body plus `type` and `schemaVersion`."""
        payload = {**self.body, "type": self.type, "schemaVersion": SCHEMA_VERSION}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def decode_message(body: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse and validate a received body; raises MalformedMessage saying exactly what is wrong."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"body is not UTF-8: {exc}") from exc
    else:
        text = body
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedMessage(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedMessage(f"body must be a JSON object, got {type(payload).__name__}")
    version = payload.get("schemaVersion")
    if version is None:
        raise MalformedMessage("body has no schemaVersion")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MalformedMessage(f"schemaVersion must be an integer, got {version!r}")
    if version != SCHEMA_VERSION:
        raise MalformedMessage(f"unsupported schemaVersion {version} (this app reads {SCHEMA_VERSION})")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedMessage("body has no message type ('type' must be a non-empty string)")
    return payload


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


class MessagePublisher(ABC):
    """The queue port the services publish through."""

    @abstractmethod
    async def publish(self, queue: str, message: OutgoingMessage) -> None:
        """Enqueue one message (or schedule it, when `scheduled_enqueue_time` is set)."""

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Enqueue several messages; adapters batch where the transport allows."""
        for message in messages:
            await self.publish(queue, message)

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op for adapters without resources
        """Release connections; further publishing is an error."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


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


class InMemoryPublisher(MessagePublisher):
    """Fake for unit tests: records messages per queue and collapses duplicate ids like Service Bus does.

    `fail_queues` maps queue name -> reason: publishing there raises QueueError, for error-path tests.
    """

    def __init__(self, fail_queues: Mapping[str, str] | None = None) -> None:
        self.published: dict[str, list[OutgoingMessage]] = {}
        self.duplicates = 0
        self.closed = False
        self.fail_queues: dict[str, str] = dict(fail_queues or {})
        self._seen: dict[str, set[str]] = {}

    async def publish(self, queue: str, message: OutgoingMessage) -> None:
        if self.closed:
            raise QueueError(queue, "publisher is closed")
        if queue in self.fail_queues:
            raise QueueError(queue, self.fail_queues[queue])
        seen = self._seen.setdefault(queue, set())
        if message.message_id in seen:
            self.duplicates += 1
            return
        seen.add(message.message_id)
        self.published.setdefault(queue, []).append(message)

    def messages(self, queue: str) -> list[OutgoingMessage]:
        return list(self.published.get(queue, []))

    def bodies(self, queue: str) -> list[dict[str, Any]]:
        """What a consumer would decode, envelope fields included."""
        return [decode_message(m.encoded_body()) for m in self.published.get(queue, [])]

    async def close(self) -> None:
        self.closed = True


__all__ = [
    "SCHEMA_VERSION",
    "InMemoryPublisher",
    "MalformedMessage",
    "MessagePublisher",
    "OutgoingMessage",
    "QueueError",
    "ServiceBusPublisher",
    "decode_message",
    "to_servicebus_message",
]
