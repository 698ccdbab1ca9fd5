"""Service Bus for operators (never the flows): is a queue usable (`doctor`), and its dead letters: look at what
failed and why, and send it back once the cause is fixed (`deadletters`).

A message lands in `<queue>/$DeadLetterQueue` after `maxDeliveryCount` failed attempts (reason
`MaxDeliveryCountExceeded`) or when a processor dead-letters it on purpose (`MalformedMessage`, ...).
Resubmitting is safe because every processor is idempotent (the ledger decides, not the message), but the copy
needs a new MessageId: with duplicate detection on, Service Bus would silently drop a copy that reuses the
original id inside the detection window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from shared.domain.deadletters import DeadLetter
from shared.ports.publisher import QueueError

__all__ = ["BODY_PREVIEW", "DeadLetter", "OperatorQueues", "ServiceBusDeadLetters", "resubmission"]

BODY_PREVIEW = 300
"""Characters of the body shown in a listing (bodies carry ids, never secrets)."""


def _body_text(message: ServiceBusReceivedMessage) -> str:
    try:
        return b"".join(message.body).decode("utf-8", errors="replace")
    except TypeError:  # a value or sequence body (not sent by guestwarden)
        return str(message)


def _as_dead_letter(queue: str, message: ServiceBusReceivedMessage) -> DeadLetter:
    return DeadLetter(
        queue=queue,
        sequence_number=message.sequence_number or 0,
        message_id=message.message_id,
        enqueued=message.enqueued_time_utc,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count or 0,
        body=_body_text(message)[:BODY_PREVIEW],
    )


def resubmission(message: ServiceBusReceivedMessage) -> ServiceBusMessage:
    """A fresh copy of a dead letter for its original queue (new MessageId, same body and properties)."""
    properties = dict(message.application_properties or {})
    properties["guestwarden-resubmitted-from"] = message.sequence_number or 0
    return ServiceBusMessage(
        b"".join(message.body),
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
        application_properties=properties,
        message_id=f"{message.message_id or 'message'}:resubmit:{message.sequence_number}",
    )


class OperatorQueues:
    """Probe queues, peek and resubmit dead letters on one namespace (the client is closed with this object)."""

    def __init__(self, client: ServiceBusClient) -> None:
        self._client = client

    async def __aenter__(self) -> OperatorQueues:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    async def probe(self, queue: str) -> None:
        """Open a sender and a receiver on `queue` and peek: nothing is sent, received or locked.

        Raises QueueError naming the queue when the namespace, the queue or the rights are missing.
        """
        try:
            async with self._client.get_queue_sender(queue):
                pass
            async with self._client.get_queue_receiver(queue, prefetch_count=0, max_wait_time=1) as receiver:
                await receiver.peek_messages(max_message_count=1)  # the entity exists and Listen works
        except ServiceBusError as exc:
            raise QueueError(queue, f"{type(exc).__name__}: {str(exc).strip()[:300]}") from exc

    async def peek(self, queue: str, max_count: int = 100) -> list[DeadLetter]:
        """The dead letters of `queue`, oldest first, without locking or changing them."""
        found: list[DeadLetter] = []
        async with self._client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            next_sequence = 0
            while len(found) < max_count:
                batch = await receiver.peek_messages(
                    max_message_count=min(100, max_count - len(found)), sequence_number=next_sequence
                )
                if not batch:
                    break
                found += [_as_dead_letter(queue, m) for m in batch]
                next_sequence = (batch[-1].sequence_number or 0) + 1
        return found

    async def resubmit(
        self, queue: str, sequence_numbers: Collection[int] | None = None, max_count: int = 100
    ) -> list[DeadLetter]:
        """Send dead letters back to `queue` and remove them from the dead-letter queue.

        `sequence_numbers` None: every dead letter (up to `max_count`). A message is completed in the dead-letter
        queue only after its copy was sent, so a failure midway loses nothing (at worst one is sent twice, which
        the idempotent processors absorb). Messages not selected are released unchanged.
        """
        wanted = None if sequence_numbers is None else set(sequence_numbers)
        sent: list[DeadLetter] = []
        async with (
            self._client.get_queue_receiver(
                queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2
            ) as receiver,
            self._client.get_queue_sender(queue) as sender,
        ):
            skipped = []
            while len(sent) < max_count and (wanted is None or len(sent) < len(wanted)):
                batch = await receiver.receive_messages(max_message_count=min(50, max_count - len(sent)))
                if not batch:
                    break
                for message in batch:
                    if wanted is not None and message.sequence_number not in wanted:
                        skipped.append(message)
                        continue
                    await sender.send_messages(resubmission(message))
                    await receiver.complete_message(message)
                    sent.append(_as_dead_letter(queue, message))
            for message in skipped:
                await receiver.abandon_message(message)
        return sent


class ServiceBusDeadLetters:
    """The DeadLetterQueues port for the function app: a client per call, closed after it (the dashboard's deps are
    built per request, the timer runs every 15 minutes: nothing to keep open). Service Bus errors become
    QueueError naming the queue."""

    def __init__(self, client: Callable[[], ServiceBusClient]) -> None:
        self._client = client

    @asynccontextmanager
    async def _queues(self, queue: str) -> AsyncIterator[OperatorQueues]:
        try:
            async with OperatorQueues(self._client()) as queues:
                yield queues
        except ServiceBusError as exc:
            raise QueueError(queue, f"{type(exc).__name__}: {str(exc).strip()[:300]}") from exc

    async def peek(self, queue: str, max_count: int = 100) -> list[DeadLetter]:
        async with self._queues(queue) as queues:
            return await queues.peek(queue, max_count)

    async def resubmit(
        self, queue: str, sequence_numbers: Collection[int] | None = None, max_count: int = 100
    ) -> list[DeadLetter]:
        async with self._queues(queue) as queues:
            return await queues.resubmit(queue, sequence_numbers, max_count)
