"""The dead-letter port: look at a queue's dead letters and send them back (an operator's tools, never a flow's).

shared.adapters.queue_admin implements it on Service Bus; tests use a fake. Failures raise QueueError naming the
queue (shared.ports.publisher).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from shared.domain.deadletters import DeadLetter


class DeadLetterQueues(Protocol):
    async def peek(self, queue: str, max_count: int = 100) -> list[DeadLetter]:
        """The dead letters of `queue`, oldest first, without locking or changing them."""
        ...

    async def resubmit(
        self, queue: str, sequence_numbers: Collection[int] | None = None, max_count: int = 100
    ) -> list[DeadLetter]:
        """Send dead letters back to `queue` (None: all, up to `max_count`); the ones sent, removed from the
        dead-letter queue."""
        ...
