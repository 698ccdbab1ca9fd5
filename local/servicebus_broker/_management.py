"""Service Bus management operations (`<entity>/$management`): request maps in, statusCode replies out.

Operations the local broker does not implement answer 501 with the operation's name, so a client fails
fast with a clear error instead of waiting for a reply that never comes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from proton import Message, symbol

from . import _wire
from ._state import BrokerState, Entity, Lock

VENDOR = "com.microsoft:"


def reply(status: int, description: str, body: Any = None, condition: str | None = None) -> Message:
    props: dict[str, Any] = {"statusCode": status, "statusDescription": description}
    if condition:
        props["errorCondition"] = symbol(condition)
    return Message(properties=props, body=body)


class Deliveries(Protocol):
    """What management operations need from the link side (the proton handler implements it): hand messages to
    consumers, and settle a message's link delivery when a lock token settles it. A protocol, so this module
    does not import the handler (which imports this one)."""

    def pump(self, key: str) -> None: ...

    def settle_by_token(self, lock: Lock, action: Callable[[], None]) -> None: ...


class ManagementOps:
    def __init__(self, state: BrokerState, handler: Deliveries) -> None:
        self.state = state
        self.handler = handler

    def handle(self, entity: Entity, request: Message) -> Message:
        properties: dict[Any, Any] = dict(request.properties or {})
        operation = str(properties.get("operation", ""))
        method = {
            VENDOR + "renew-lock": self.renew_lock,
            VENDOR + "schedule-message": self.schedule,
            VENDOR + "cancel-scheduled-message": self.cancel,
            VENDOR + "peek-message": self.peek,
            VENDOR + "update-disposition": self.update_disposition,
        }.get(operation)
        if method is None:
            return reply(
                501,
                f"The management operation '{operation}' is not supported by the local Service Bus broker.",
                condition="amqp:not-implemented",
            )
        try:
            return method(entity, request.body)
        except (KeyError, TypeError, ValueError) as exc:
            return reply(400, f"Malformed '{operation}' request: {exc}", condition=VENDOR + "argument-error")

    def renew_lock(self, entity: Entity, body: Any) -> Message:
        now = self.state.now()
        expirations = []
        for token in _wire.as_list(_wire.get_field(body, "lock-tokens")):
            lock = self.state.find_lock(entity, _uuid(token))
            if lock is None or lock.locked_until <= now:
                return reply(
                    410,
                    "The lock supplied is invalid. Either the lock expired, or the message has already been "
                    "removed from the queue.",
                    condition=VENDOR + "message-lock-lost",
                )
            expirations.append(self.state.renew(lock, now))
        return reply(200, "OK", {"expirations": _wire.timestamps(expirations)})

    def schedule(self, entity: Entity, body: Any) -> Message:
        if entity.is_dead_letter:
            return reply(400, "Cannot schedule messages on a dead-letter queue.", condition="amqp:not-allowed")
        now = self.state.now()
        numbers = []
        for item in _wire.as_list(_wire.get_field(body, "messages")):
            message = _wire.decode_message(bytes(_wire.get_field(item, "message")))
            at = _wire.scheduled_time_s(message)
            numbers.append(self.state.enqueue(entity, message, now, scheduled_at=at if at else now))
        self.handler.pump(entity.name.lower())
        return reply(200, "OK", {"sequence-numbers": _wire.longs(numbers)})

    def cancel(self, entity: Entity, body: Any) -> Message:
        numbers = [int(n) for n in _wire.as_list(_wire.get_field(body, "sequence-numbers"))]
        missing = self.state.cancel_scheduled(entity, numbers)
        if missing:
            return reply(
                404,
                f"No scheduled message with sequence number(s) {missing} in '{entity.name}'.",
                condition=VENDOR + "message-not-found",
            )
        return reply(200, "OK", {})

    def peek(self, entity: Entity, body: Any) -> Message:
        start = int(_wire.get_field(body, "from-sequence-number") or 1)
        count = int(_wire.get_field(body, "message-count") or 1)
        rows = self.state.peek(entity, start, count)
        if not rows:
            return reply(204, "No messages to peek.")
        messages = [
            {
                "message": _wire.stamp(
                    entry.message,
                    sequence_number=entry.sequence_number,
                    enqueued_at=entry.enqueued_at,
                    delivery_count=max(0, entry.deliveries - 1),
                    state=state,
                )
            }
            for entry, state in rows
        ]
        return reply(200, "OK", {"messages": messages})

    def update_disposition(self, entity: Entity, body: Any) -> Message:
        status = str(_wire.get_field(body, "disposition-status") or "")
        reason = _wire.get_field(body, "deadletter-reason")
        description = _wire.get_field(body, "deadletter-description")
        now = self.state.now()
        for token in _wire.as_list(_wire.get_field(body, "lock-tokens")):
            lock = self.state.find_lock(entity, _uuid(token))
            if lock is None:
                return reply(410, "The lock supplied is invalid.", condition=VENDOR + "message-lock-lost")
            if status == "completed":
                self.handler.settle_by_token(lock, partial(self.state.complete, lock))
            elif status == "abandoned":
                self.handler.settle_by_token(lock, partial(self.state.abandon, lock, now))
            elif status == "suspended":
                self.handler.settle_by_token(
                    lock,
                    partial(
                        self.state.dead_letter,
                        lock,
                        str(reason) if reason else None,
                        str(description) if description else None,
                        now,
                    ),
                )
            else:
                return reply(
                    501,
                    f"Disposition '{status}' is not supported by the local Service Bus broker.",
                    condition="amqp:not-implemented",
                )
            self.handler.pump(lock.entity.name.lower())
            if lock.entity.dead_letter is not None:
                self.handler.pump(lock.entity.dead_letter.name.lower())
        return reply(200, "OK", {})


def _uuid(token: Any) -> uuid.UUID:
    if isinstance(token, uuid.UUID):
        return token
    if isinstance(token, bytes) and len(token) == 16:
        return uuid.UUID(bytes=token)
    return uuid.UUID(str(token))
