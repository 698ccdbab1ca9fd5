"""Service Bus queue triggers through the real azure-servicebus SDK, with the Functions extension's semantics.

Peek-lock; success -> complete (autoCompleteMessages), exception -> abandon, so the broker redelivers and
dead-letters after the queue's maxDeliveryCount. At most maxConcurrentCalls messages per function are in
flight; locks are renewed while the function runs, up to maxAutoLockRenewalDuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.functions.servicebus import ServiceBusMessage as FunctionsServiceBusMessage
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import ServiceBusError

from .invocation import InvocationResult
from .metadata import FunctionSpec, ServiceBusTriggerSpec
from .settings import HostConfigError

log = logging.getLogger("local.host.servicebus")

Invoke = Callable[[FunctionSpec, Any], Awaitable[InvocationResult]]


@dataclass(frozen=True)
class ServiceBusConnection:
    """Where a trigger's `connection` points: a connection string or a namespace for managed identity."""

    connection_string: str | None = None
    fully_qualified_namespace: str | None = None

    @classmethod
    def from_settings(cls, function: str, connection: str, settings: Mapping[str, str]) -> ServiceBusConnection:
        for name in (connection, f"AzureWebJobs{connection}"):
            if settings.get(name):
                return cls(connection_string=settings[name])
        namespace_setting = f"{connection}__fullyQualifiedNamespace"
        if settings.get(namespace_setting):
            return cls(fully_qualified_namespace=settings[namespace_setting])
        raise HostConfigError(
            f"function '{function}': Service Bus connection '{connection}' is not configured: set app setting "
            f"'{connection}' (a connection string) or '{namespace_setting}' (identity-based)"
        )

    def client(self) -> tuple[ServiceBusClient, Any]:
        """A client and the credential to close with it (None for connection strings)."""
        if self.connection_string is not None:
            try:
                return ServiceBusClient.from_connection_string(self.connection_string), None
            except ValueError as error:
                raise HostConfigError(f"invalid Service Bus connection string: {error}") from None
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        assert self.fully_qualified_namespace is not None
        return ServiceBusClient(self.fully_qualified_namespace, credential), credential


def to_function_message(message: ServiceBusReceivedMessage) -> FunctionsServiceBusMessage:
    """The ServiceBusMessage the Python worker would build from the extension's trigger data."""
    application_properties = _plain_properties(message.application_properties)
    # AMQP's header counts prior failed attempts; the extension (.NET SDK) reports 1 on first delivery.
    delivery_count = (message.delivery_count or 0) + 1
    state = message.state
    metadata: dict[str, Any] = {
        "MessageId": str(message.message_id),
        "DeliveryCount": delivery_count,
        "ContentType": message.content_type,
        "CorrelationId": message.correlation_id,
        "SequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": message.enqueued_time_utc.isoformat() if message.enqueued_time_utc else None,
        "LockToken": str(message.lock_token),
        "ApplicationProperties": application_properties,
        "UserProperties": application_properties,
    }
    return FunctionsServiceBusMessage(
        body=_body_bytes(message),
        trigger_metadata=metadata,
        application_properties=application_properties,
        user_properties=dict(application_properties),
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token),
        message_id=str(message.message_id),
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(state) if state is not None else None,
        subject=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
    )


def manual_function_message(body: bytes) -> FunctionsServiceBusMessage:
    """A message for `POST /admin/functions/<name>`: invoked directly, never settled."""
    return FunctionsServiceBusMessage(
        body=body, message_id="manual", delivery_count=1, application_properties={}, user_properties={}
    )


def _body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    body_type = message.body_type
    if body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(section) for section in message.body)
    value = message.body
    if body_type == AmqpMessageBodyType.SEQUENCE:
        value = list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, default=str).encode("utf-8")


def _plain_properties(properties: Mapping[Any, Any] | None) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in (properties or {}).items():
        name = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                value = value.decode("utf-8")
        plain[name] = value
    return plain


CLOSE_TIMEOUT_S = 15.0
"""A client whose connection died can hang in close(): shutdown goes on without it after this long."""


class QueuePump:
    """Feeds one queue-triggered function from its queue."""

    def __init__(
        self,
        spec: FunctionSpec,
        connection: ServiceBusConnection,
        invoke: Invoke,
        *,
        max_concurrent_calls: int,
        auto_complete: bool,
        max_lock_renewal: timedelta,
        receive_wait_s: float = 0.5,
    ) -> None:
        assert isinstance(spec.trigger, ServiceBusTriggerSpec)
        self._spec = spec
        self._queue = spec.trigger.queue_name
        self._connection = connection
        self._invoke = invoke
        self._max_calls = max_concurrent_calls
        self._slots = asyncio.Semaphore(max_concurrent_calls)
        self._auto_complete = auto_complete
        self._max_lock_renewal = max_lock_renewal.total_seconds()
        self._receive_wait_s = receive_wait_s
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._client: ServiceBusClient | None = None
        self._credential: Any = None
        self._receiver: ServiceBusReceiver | None = None
        self._renewer: AutoLockRenewer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._link_open = False

    async def start(self) -> None:
        self._client, self._credential = self._connection.client()
        self._receiver = self._new_receiver()
        self._renewer = self._new_renewer()
        self._loop_task = asyncio.create_task(self._receive_loop(), name=f"servicebus:{self._spec.name}")

    def _new_renewer(self) -> AutoLockRenewer:
        return AutoLockRenewer(max_lock_renewal_duration=self._max_lock_renewal)

    def _new_receiver(self) -> ServiceBusReceiver:
        assert self._client is not None
        return self._client.get_queue_receiver(
            self._queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
        )

    async def _replace_receiver(self) -> None:
        """After a receive error the receiver's handler may be shut down for good (a lost connection, a broker
        restart): like the Functions host's Service Bus extension, start over with a new receiver. Messages the
        old one still had locked are redelivered when their locks expire.

        Each receiver has its own lock renewer, closed before the receiver, as in `stop`: closing a receiver under
        a lock renewal in flight can leave azure-servicebus spinning in that management request for good, which
        starves the whole event loop (docs/reliability.md)."""
        old, self._receiver = self._receiver, self._new_receiver()
        old_renewer, self._renewer = self._renewer, self._new_renewer()
        await _close(old_renewer)
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), timeout=10)

    async def stop(self, timeout_s: float) -> None:
        """Stop receiving, let in-flight invocations settle (up to `timeout_s`), then close the clients."""
        self._stopping.set()
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(self._loop_task, timeout=self._receive_wait_s + 5)
            except TimeoutError:
                log.warning("'%s': receiver did not stop in time", self._spec.name)
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=timeout_s)
            if pending:
                log.warning("'%s': %d invocation(s) still running at shutdown", self._spec.name, len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        # The renewer first: closing the receiver under a lock renewal in flight can leave azure-servicebus
        # spinning in that management request for good (docs/reliability.md).
        await _close(self._renewer)
        await _close(self._receiver)
        await _close(self._client)
        await _close(self._credential)

    async def _receive_loop(self) -> None:
        assert self._receiver is not None
        backoff = 1.0
        while not self._stopping.is_set():
            await self._slots.acquire()
            reserved = 1
            # Take every free slot, so one receive asks for as many messages as we can run right now.
            while reserved < self._max_calls and not self._slots.locked():
                await self._slots.acquire()
                reserved += 1
            try:
                if not self._link_open:
                    # Opened with the SDK's own retry budget: the short receive wait below is too short
                    # to attach a link, and the SDK would charge the attach to it.
                    await self._receiver.__aenter__()
                    self._link_open = True
                messages = await self._receiver.receive_messages(
                    max_message_count=reserved, max_wait_time=self._receive_wait_s
                )
                backoff = 1.0
            except Exception as error:  # ServiceBusError, or ValueError/AttributeError from a shut-down handler
                self._link_open = False
                for _ in range(reserved):
                    self._slots.release()
                log.warning("'%s': receiving from '%s' failed (%s); retrying", self._spec.name, self._queue, error)
                await self._replace_receiver()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            for _ in range(reserved - len(messages)):
                self._slots.release()
            for message in messages:
                task = asyncio.create_task(self._process(message, self._receiver, self._renewer))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _process(
        self, message: ServiceBusReceivedMessage, receiver: ServiceBusReceiver, renewer: AutoLockRenewer | None
    ) -> None:
        """Run one message; settle it on the receiver that received it and renew its lock with that receiver's
        renewer, even if both were replaced since."""
        assert renewer is not None
        try:
            renewer.register(receiver, message)
            result = await self._invoke(self._spec, to_function_message(message))
            if result.ok:
                if self._auto_complete:
                    await receiver.complete_message(message)
            else:
                await receiver.abandon_message(message)
        except (ServiceBusError, ValueError) as error:
            # The lock may be lost (expired, or the link closed; the SDK raises ValueError once the receiver is
            # shut down, e.g. a killed host): the broker will redeliver.
            log.warning("'%s': settling message %s failed: %s", self._spec.name, message.message_id, error)
        finally:
            self._slots.release()


async def _close(closeable: Any) -> None:
    if closeable is None:
        return
    try:
        await asyncio.wait_for(closeable.close(), timeout=CLOSE_TIMEOUT_S)
    except Exception as error:  # closing must not stop the rest of the shutdown
        log.debug("closing %s failed: %s", type(closeable).__name__, error)
