"""The proton event handler: links, transfers and dispositions as the azure-servicebus SDK exercises them."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import Condition, Delivery, Endpoint, Handler, Link, Message, symbol

from . import _wire
from ._management import ManagementOps
from ._state import BrokerState, Entity, Lock

log = logging.getLogger("local.servicebus_broker")

RECEIVER_CREDIT = 500
NOT_FOUND = "amqp:not-found"
LOCK_LOST = "com.microsoft:message-lock-lost"


@dataclass
class LinkRole:
    """What an attached link is for: a queue (send or consume), a management node, or CBS."""

    kind: str  # "queue" | "management" | "cbs"
    path: str  # normalised address, e.g. "orders", "orders/$management", "$cbs"
    entity: Entity | None = None
    pending_replies: list[bytes] = field(default_factory=list)


def entity_path(address: str | None) -> str:
    """`amqps://host:port/q/$management` -> `q/$management`."""
    address = address or ""
    if "://" in address:
        rest = address.split("://", 1)[1]
        address = rest.split("/", 1)[1] if "/" in rest else ""
    return address.strip("/")


class BrokerHandler(Handler):
    def __init__(self, state: BrokerState) -> None:
        super().__init__()
        self.state = state
        self.links: dict[Link, LinkRole] = {}
        self.consumers: dict[str, list[Link]] = {}
        self.deliveries: dict[Delivery, Lock] = {}
        self._tags = itertools.count(1)
        self.management = ManagementOps(state, self)
        self.connections: set[Any] = set()
        self.on_stop: Callable[[], None] | None = None

    def on_broker_stop(self, event: Any) -> None:
        if self.on_stop is not None:
            self.on_stop()

    # -- connection plumbing ------------------------------------------------------------------------------

    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS PLAIN EXTERNAL")

    def on_connection_remote_open(self, event: Any) -> None:
        self.connections.add(event.connection)
        if event.connection.state & Endpoint.LOCAL_UNINIT:
            event.connection.open()

    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_session_remote_close(self, event: Any) -> None:
        if not event.session.state & Endpoint.LOCAL_CLOSED:
            event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        self._forget_connection(event.connection)
        if not event.connection.state & Endpoint.LOCAL_CLOSED:
            event.connection.close()

    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget_connection(event.connection)
            self.connections.discard(event.connection)

    def _forget_connection(self, connection: Any) -> None:
        with self.state.lock:
            for link in [lk for lk in self.links if lk.connection == connection]:
                self._forget_link(link)

    def _forget_link(self, link: Link) -> None:
        role = self.links.pop(link, None)
        if role is not None and role.kind == "queue":
            key = role.path.lower()
            self.consumers[key] = [lk for lk in self.consumers.get(key, []) if lk != link]
        for dlv in [d for d, lock in self.deliveries.items() if d.link == link]:
            lock = self.deliveries.pop(dlv)
            lock.delivery = None

    # -- links ----------------------------------------------------------------------------------------------

    def on_link_remote_open(self, event: Any) -> None:
        link: Link = event.link
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        address = link.remote_source.address if link.is_sender else link.remote_target.address
        path = entity_path(address)
        with self.state.lock:
            role = self._resolve(path)
            # Echo the termini even when refusing: the SDK treats an attach without them as a broken link
            # instead of reading the detach error that follows.
            link.source.copy(link.remote_source)
            link.target.copy(link.remote_target)
            if role is None:
                log.info("refusing a link to unknown entity %r", path)
                if link.is_receiver:
                    # The SDK reads a detach that races its first send as "unknown error"; refusing the first
                    # transfer instead surfaces amqp:not-found (MessagingEntityNotFoundError) on send.
                    self.links[link] = LinkRole("missing", path)
                    link.open()
                    link.flow(1)
                else:
                    link.condition = self._not_found(path)
                    link.open()
                    link.close()
                return
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
            self.links[link] = role
            link.open()
            if link.is_receiver:
                link.flow(RECEIVER_CREDIT)
            elif role.kind == "queue":
                self.consumers.setdefault(path.lower(), []).append(link)
                self.pump(path.lower())

    def _not_found(self, path: str) -> Condition:
        names = ", ".join(self.state.queue_names())
        return Condition(
            NOT_FOUND,
            f"The messaging entity '{path}' could not be found. The local broker declares these queues: {names}.",
        )

    def _resolve(self, path: str) -> LinkRole | None:
        if path.lower() == "$cbs":
            return LinkRole("cbs", "$cbs")
        if path.lower().endswith("/$management"):
            entity = self.state.find(path[: -len("/$management")])
            return LinkRole("management", path.lower(), entity) if entity else None
        entity = self.state.find(path)
        return LinkRole("queue", entity.name, entity) if entity else None

    def on_link_remote_close(self, event: Any) -> None:
        link: Link = event.link
        with self.state.lock:
            self._forget_link(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    def on_link_flow(self, event: Any) -> None:
        link: Link = event.link
        if not link.is_sender:
            return
        with self.state.lock:
            role = self.links.get(link)
            if role is None:
                return
            if role.pending_replies:
                self._flush_replies(link, role)
            if role.kind == "queue":
                self.pump(role.path.lower())
            if link.drain_mode and link.credit > 0:
                link.drained()

    # -- transfers in ---------------------------------------------------------------------------------------

    def on_delivery(self, event: Any) -> None:
        dlv: Delivery = event.delivery
        with self.state.lock:
            if dlv.link.is_receiver:
                self._on_transfer(dlv)
            else:
                self._on_disposition(dlv)

    def _on_transfer(self, dlv: Delivery) -> None:
        link = dlv.link
        if not dlv.readable or dlv.partial:
            return
        raw = bytes(link.recv(dlv.pending) or b"")
        link.advance()
        role = self.links.get(link)
        outcome: Condition | None = None
        try:
            if role is None:
                outcome = Condition("amqp:illegal-state", "transfer on an unknown link")
            elif role.kind == "missing":
                outcome = self._not_found(role.path)
            elif role.kind == "queue" and role.entity is not None:
                outcome = self._enqueue(role.entity, raw)
            else:
                request = _wire.decode_message(raw)
                if role.kind == "cbs":
                    self._reply(link, role.path, request, _cbs_reply(request))
                else:
                    assert role.entity is not None
                    self._reply(link, role.path, request, self.management.handle(role.entity, request))
        except Exception as exc:
            log.exception("failed to handle a transfer on %s", role.path if role else "?")
            outcome = Condition("amqp:internal-error", f"local broker error: {exc}")
        if outcome is None:
            dlv.update(Delivery.ACCEPTED)
        else:
            dlv.local.condition = outcome
            dlv.update(Delivery.REJECTED)
        dlv.settle()
        if role is not None and role.kind == "missing":
            link.condition = outcome
            link.close()
            self._forget_link(link)
        elif link.credit < RECEIVER_CREDIT // 2:
            link.flow(RECEIVER_CREDIT - link.credit)

    def _enqueue(self, entity: Entity, raw: bytes) -> Condition | None:
        if entity.is_dead_letter:
            return Condition("amqp:not-allowed", f"cannot send to the dead-letter queue '{entity.name}'")
        now = self.state.now()
        for message in _wire.split_transfer(raw):
            self.state.enqueue(entity, message, now, scheduled_at=_wire.scheduled_time_s(message))
        self.pump(entity.name.lower())
        return None

    # -- management replies ---------------------------------------------------------------------------------

    def _reply(self, request_link: Link, path: str, request: Message, reply: Message) -> None:
        reply.correlation_id = request.id
        if request.reply_to:
            reply.address = request.reply_to
        payload = bytes(reply.encode())
        target = self._reply_link(request_link, path)
        if target is None:
            log.warning("no reply link for %s on this connection; dropping the reply", path)
            return
        role = self.links[target]
        role.pending_replies.append(payload)
        self._flush_replies(target, role)

    def _reply_link(self, request_link: Link, path: str) -> Link | None:
        fallback = None
        for link, role in self.links.items():
            if link.is_sender and role.path == path and link.connection == request_link.connection:
                if link.session == request_link.session:
                    return link
                fallback = link
        return fallback

    def _flush_replies(self, link: Link, role: LinkRole) -> None:
        while role.pending_replies and link.credit > 0:
            payload = role.pending_replies.pop(0)
            dlv = link.delivery(str(next(self._tags)))
            link.stream(payload)
            link.advance()
            dlv.settle()

    # -- transfers out --------------------------------------------------------------------------------------

    def pump(self, key: str) -> None:
        """Hand available messages of one entity to its consumers' credit, round robin."""
        entity = self.state.entities.get(key)
        links = self.consumers.get(key)
        if entity is None or not links:
            return
        while entity.available:
            ready = [lk for lk in links if lk.credit > 0 and lk.state & Endpoint.LOCAL_ACTIVE]
            if not ready:
                break
            for link in ready:
                if not entity.available or link.credit <= 0:
                    continue
                self._deliver(entity, link)
        for link in links:
            if link.drain_mode and link.credit > 0 and not entity.available:
                link.drained()

    def _deliver(self, entity: Entity, link: Link) -> None:
        peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        now = self.state.now()
        taken = self.state.take(entity, now, peek_lock=peek_lock)
        if taken is None:
            return
        entry, lock = taken
        payload = _wire.stamp(
            entry.message,
            sequence_number=entry.sequence_number,
            enqueued_at=entry.enqueued_at,
            delivery_count=entry.deliveries - 1,
            locked_until=lock.locked_until if lock else None,
        )
        token = lock.token if lock else uuid.uuid4()
        dlv = link.delivery(token.bytes_le)  # type: ignore[arg-type]  # proton accepts bytes tags
        link.stream(payload)
        link.advance()
        if lock is None:
            dlv.settle()
        else:
            lock.delivery = dlv
            self.deliveries[dlv] = lock

    # -- dispositions ---------------------------------------------------------------------------------------

    def _on_disposition(self, dlv: Delivery) -> None:
        outcome = dlv.remote_state
        if not outcome:
            if dlv.remote_settled:
                self.deliveries.pop(dlv, None)
                dlv.settle()
            return
        lock = self.deliveries.pop(dlv, None)
        if lock is None or lock.token not in lock.entity.locks:
            if not dlv.settled:
                dlv.local.condition = Condition(
                    LOCK_LOST,
                    "The lock supplied is invalid. Either the lock expired, or the message has already "
                    "been removed from the queue.",
                )
                dlv.update(Delivery.REJECTED)
                dlv.settle()
            return
        lock.delivery = None
        now = self.state.now()
        key = lock.entity.name.lower()
        echo: Any = outcome
        if outcome == Delivery.ACCEPTED:
            self.state.complete(lock)
        elif outcome == Delivery.RELEASED:
            self.state.release(lock)
        elif outcome == Delivery.MODIFIED:
            if dlv.remote.undeliverable:
                self.state.release(lock)
                dlv.local.condition = Condition(
                    "amqp:not-implemented", "Message deferral is not supported by the local broker."
                )
                echo = Delivery.REJECTED
            else:
                self.state.abandon(lock, now)
        elif outcome == Delivery.REJECTED:
            info = _condition_info(dlv.remote.condition)
            self.state.dead_letter(
                lock,
                _text(info.get("DeadLetterReason")),
                _text(info.get("DeadLetterErrorDescription")),
                now,
            )
            if lock.entity.dead_letter is not None:
                self.pump(lock.entity.dead_letter.name.lower())
        else:
            self.state.release(lock)
        if not dlv.settled:
            dlv.update(echo)
            dlv.settle()
        self.pump(key)

    def settle_by_token(self, lock: Lock, action: Callable[[], None]) -> None:
        """Settle a locked message through the management link: also settle its delivery on the link."""
        delivery = lock.delivery
        action()
        if delivery is not None:
            self.deliveries.pop(delivery, None)
            lock.delivery = None
            if not delivery.settled:
                delivery.update(Delivery.ACCEPTED)
                delivery.settle()

    # -- timers ---------------------------------------------------------------------------------------------

    def tick(self) -> None:
        with self.state.lock:
            for key in self.state.tick(self.state.now()):
                self.pump(key)


def _condition_info(condition: Condition | None) -> dict[str, Any]:
    if condition is None or not condition.info:
        return {}
    info: Any = condition.info
    return {str(k): v for k, v in dict(info).items()} if isinstance(info, dict) else {}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _cbs_reply(request: Message) -> Message:
    """Every token is accepted: the local broker does not authorise (Service Bus answers 202 too)."""
    return Message(properties={"status-code": 202, "status-description": "Accepted"}, body=None)


__all__ = ["BrokerHandler", "LinkRole", "entity_path", "symbol"]
