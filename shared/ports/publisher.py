"""The publisher port: services put work items on a named queue through `MessagePublisher`.

Every message carries a caller-chosen, deterministic message id: Service Bus duplicate detection then collapses a
re-sent work item (a retried webhook, an overlapping poll) into one delivery. The body is a typed message of
shared/domain/messages.py; the envelope (`type`, `schemaVersion`) is added on the way out.
Adapter: shared/adapters/queue.py (azure-servicebus; locally the same code talks to local/servicebus_broker).
The fake for unit tests is tests/fakes/publisher.py; both pass tests/integration/test_publisher_contract.py.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from shared.domain.messages import SCHEMA_VERSION, Message

__all__ = ["MAX_MESSAGE_ID_LENGTH", "MessagePublisher", "OutgoingMessage", "PropertyValue", "QueueError"]

MAX_MESSAGE_ID_LENGTH = 128  # Service Bus rejects longer message ids

PropertyValue = str | int | float | bool


class QueueError(Exception):
    """Publishing to a queue failed; names the queue and why."""

    def __init__(self, queue: str, reason: str) -> None:
        self.queue = queue
        self.reason = reason
        super().__init__(f"queue {queue!r}: {reason}")


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

    @classmethod
    def of(
        cls,
        message: Message,
        *,
        message_id: str,
        correlation_id: str | None = None,
        scheduled_enqueue_time: datetime | None = None,
    ) -> OutgoingMessage:
        """The work item carrying one typed message."""
        return cls(
            message_id=message_id,
            type=message.TYPE,
            body=message.to_body(),
            correlation_id=correlation_id,
            scheduled_enqueue_time=scheduled_enqueue_time,
        )

    def encoded_body(self) -> str:
        """The JSON text that goes on the wire: the body plus `type` and `schemaVersion`."""
        payload = {**self.body, "type": self.type, "schemaVersion": SCHEMA_VERSION}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=False)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
