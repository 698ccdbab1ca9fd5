"""An in-memory `MessagePublisher`: the fake the service-layer unit tests publish to.

It records messages per queue and collapses duplicate ids like Service Bus duplicate detection does; it passes
the same contract suite as the Service Bus adapter (tests/integration/test_publisher_contract.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.messages import decode_message
from shared.ports.publisher import MessagePublisher, OutgoingMessage, QueueError


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
