"""In-memory queue state with Service Bus delivery semantics, free of any AMQP plumbing.

The proton handler (``_handler.py``) is the only writer and runs on the reactor thread; the test and
benchmark introspection reads from other threads. Both go through ``BrokerState.lock``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from proton import Message

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


class Clock(Protocol):
    """Where the broker reads the time: lock expiry, scheduled messages and the duplicate-detection window.

    The same shape as the local host's clock and the Graph simulator's SimClock (which tests can advance)."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class WallClock:
    """The default: the machine's wall clock (the SDK reads lock and enqueue times as wall-clock instants)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class QueueOptions:
    """Per-queue settings, named like the Service Bus queue properties they stand in for."""

    max_delivery_count: int | None = None
    lock_duration_s: float | None = None
    duplicate_window_s: float | None = None
    requires_duplicate_detection: bool = True


@dataclass
class StoredMessage:
    """One message as the broker holds it: the decoded AMQP message plus the broker-owned facts."""

    sequence_number: int
    message: Message
    enqueued_at: float
    deliveries: int = 0
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None

    def __lt__(self, other: StoredMessage) -> bool:
        return self.sequence_number < other.sequence_number


@dataclass
class Lock:
    """A peek-lock held on a message; the token is also the AMQP delivery tag (as ``bytes_le``)."""

    token: uuid.UUID
    entity: Entity
    entry: StoredMessage
    locked_until: float
    delivery: Any = None  # proton Delivery while its link is alive


@dataclass
class Entity:
    """A queue or its dead-letter sub-queue."""

    name: str
    max_delivery_count: int | None
    lock_duration_s: float
    duplicate_window_s: float
    requires_duplicate_detection: bool
    is_dead_letter: bool = False
    available: list[StoredMessage] = field(default_factory=list)
    scheduled: dict[int, tuple[float, StoredMessage]] = field(default_factory=dict)
    locks: dict[uuid.UUID, Lock] = field(default_factory=dict)
    seen_ids: dict[Hashable, float] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)
    dead_letter: Entity | None = None
    parent: Entity | None = None
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_sequence_number(self) -> int:
        root = self.parent or self
        return next(root._sequence)

    def push_available(self, entry: StoredMessage) -> None:
        heapq.heappush(self.available, entry)

    def pop_available(self) -> StoredMessage | None:
        return heapq.heappop(self.available) if self.available else None


class BrokerState:
    """All queues, their messages and locks. Every public method expects ``lock`` to be held."""

    def __init__(
        self,
        queues: dict[str, QueueOptions],
        *,
        max_delivery_count: int,
        lock_duration_s: float,
        duplicate_window_s: float,
        clock: Clock | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock: Clock = clock or WallClock()
        self.timer_passes = 0
        """How many timer passes (tick) have run; `timer_pass_done` is notified after each."""
        self.timer_pass_done = threading.Condition(self.lock)
        self.entities: dict[str, Entity] = {}
        for name, opts in queues.items():
            queue = Entity(
                name=name,
                max_delivery_count=opts.max_delivery_count or max_delivery_count,
                lock_duration_s=opts.lock_duration_s or lock_duration_s,
                duplicate_window_s=(
                    opts.duplicate_window_s if opts.duplicate_window_s is not None else duplicate_window_s
                ),
                requires_duplicate_detection=opts.requires_duplicate_detection,
            )
            dlq = Entity(
                name=name + "/$DeadLetterQueue",
                max_delivery_count=None,
                lock_duration_s=queue.lock_duration_s,
                duplicate_window_s=0,
                requires_duplicate_detection=False,
                is_dead_letter=True,
                parent=queue,
            )
            queue.dead_letter = dlq
            self.entities[name.lower()] = queue
            self.entities[dlq.name.lower()] = dlq

    def now(self) -> float:
        """The clock's reading as POSIX seconds, the unit every stored instant uses."""
        return self.clock.now().timestamp()

    # -- lookup ---------------------------------------------------------------------------------------------

    def find(self, path: str) -> Entity | None:
        return self.entities.get(path.strip("/").lower())

    def queue(self, name: str) -> Entity:
        entity = self.find(name)
        if entity is None:
            raise KeyError(f"unknown queue {name!r}; declared: {sorted(self.queue_names())}")
        return entity

    def queue_names(self) -> list[str]:
        return [e.name for e in self.entities.values() if not e.is_dead_letter]

    # -- enqueue --------------------------------------------------------------------------------------------

    def enqueue(self, entity: Entity, message: Message, now: float, scheduled_at: float | None = None) -> int:
        """Store a sent message; returns its sequence number, or 0 when it collapsed as a duplicate."""
        if self._is_duplicate(entity, message.id, now):
            entity.stats["duplicates"] += 1
            return 0
        entry = StoredMessage(entity.next_sequence_number(), message, enqueued_at=now)
        entity.stats["sent"] += 1
        if scheduled_at is not None and scheduled_at > now:
            entity.scheduled[entry.sequence_number] = (scheduled_at, entry)
            entity.stats["scheduled"] += 1
        else:
            entity.push_available(entry)
        return entry.sequence_number

    def _is_duplicate(self, entity: Entity, message_id: Any, now: float) -> bool:
        if not entity.requires_duplicate_detection or message_id is None or entity.duplicate_window_s <= 0:
            return False
        key = message_id if isinstance(message_id, Hashable) else repr(message_id)
        seen_until = entity.seen_ids.get(key)
        if seen_until is not None and seen_until > now:
            return True
        entity.seen_ids[key] = now + entity.duplicate_window_s
        return False

    def cancel_scheduled(self, entity: Entity, sequence_numbers: Iterable[int]) -> list[int]:
        """Cancel scheduled messages; returns the sequence numbers that were not (or no longer) scheduled."""
        missing = []
        for number in sequence_numbers:
            if entity.scheduled.pop(int(number), None) is None:
                missing.append(int(number))
            else:
                entity.stats["cancelled"] += 1
        return missing

    # -- delivery -------------------------------------------------------------------------------------------

    def take(self, entity: Entity, now: float, *, peek_lock: bool) -> tuple[StoredMessage, Lock | None] | None:
        """Hand out the next available message: locked (peek-lock) or removed (receive-and-delete)."""
        entry = entity.pop_available()
        if entry is None:
            return None
        entry.deliveries += 1
        entity.stats["delivered"] += 1
        if not peek_lock:
            entity.stats["received_and_deleted"] += 1
            return entry, None
        token = uuid.uuid4()
        lock = Lock(token, entity, entry, locked_until=now + entity.lock_duration_s)
        entity.locks[token] = lock
        return entry, lock

    def complete(self, lock: Lock) -> None:
        if lock.entity.locks.pop(lock.token, None) is not None:
            lock.entity.stats["completed"] += 1

    def release(self, lock: Lock) -> None:
        """The receiver gave the message back unprocessed (AMQP released): no delivery attempt counted."""
        if lock.entity.locks.pop(lock.token, None) is not None:
            lock.entry.deliveries = max(0, lock.entry.deliveries - 1)
            lock.entity.stats["released"] += 1
            lock.entity.push_available(lock.entry)

    def abandon(self, lock: Lock, now: float, *, stat: str = "abandoned") -> None:
        """A failed delivery attempt (abandon or lock expiry): redeliver, or dead-letter past the limit."""
        entity = lock.entity
        if entity.locks.pop(lock.token, None) is None:
            return
        entity.stats[stat] += 1
        limit = entity.max_delivery_count
        if limit is not None and lock.entry.deliveries >= limit:
            self._move_to_dead_letter(
                entity,
                lock.entry,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {limit} delivery attempts.",
                now,
            )
        else:
            entity.push_available(lock.entry)

    def dead_letter(self, lock: Lock, reason: str | None, description: str | None, now: float) -> None:
        entity = lock.entity
        if entity.locks.pop(lock.token, None) is None:
            return
        if entity.dead_letter is None:  # dead-lettering from the DLQ itself: Service Bus refuses too
            entity.push_available(lock.entry)
            return
        self._move_to_dead_letter(entity, lock.entry, reason, description, now)

    def _move_to_dead_letter(
        self, entity: Entity, entry: StoredMessage, reason: str | None, description: str | None, now: float
    ) -> None:
        assert entity.dead_letter is not None
        entity.stats["dead_lettered"] += 1
        entry.dead_letter_reason = reason
        entry.dead_letter_description = description
        props: dict[str, Any] = dict(entry.message.properties or {})
        if reason is not None:
            props["DeadLetterReason"] = reason
        if description is not None:
            props["DeadLetterErrorDescription"] = description
        entry.message.properties = props  # type: ignore[assignment]
        entity.dead_letter.push_available(entry)
        entity.dead_letter.stats["sent"] += 1

    def renew(self, lock: Lock, now: float) -> float:
        lock.locked_until = now + lock.entity.lock_duration_s
        return lock.locked_until

    def find_lock(self, entity: Entity, token: uuid.UUID) -> Lock | None:
        lock = entity.locks.get(token)
        if lock is None and entity.parent is None and entity.dead_letter is not None:
            lock = entity.dead_letter.locks.get(token)
        return lock

    # -- timers ---------------------------------------------------------------------------------------------

    def tick(self, now: float) -> set[str]:
        """Activate due scheduled messages and expire locks; returns entities that gained messages."""
        changed: set[str] = set()
        for entity in self.entities.values():
            due = [seq for seq, (at, _) in entity.scheduled.items() if at <= now]
            for seq in sorted(due):
                _, entry = entity.scheduled.pop(seq)
                entry.enqueued_at = now
                entity.push_available(entry)
                changed.add(entity.name.lower())
            expired = [lock for lock in entity.locks.values() if lock.locked_until <= now]
            for lock in expired:
                self.abandon(lock, now, stat="lock_expired")
                changed.add(entity.name.lower())
                if entity.dead_letter is not None:
                    changed.add(entity.dead_letter.name.lower())
            if entity.seen_ids and int(now) % 5 == 0:
                entity.seen_ids = {k: until for k, until in entity.seen_ids.items() if until > now}
        self.timer_passes += 1
        self.timer_pass_done.notify_all()
        return changed

    # -- browsing -------------------------------------------------------------------------------------------

    def peek(self, entity: Entity, from_sequence: int, count: int) -> list[tuple[StoredMessage, int]]:
        """Messages with sequence number >= from_sequence: (entry, state) with state 0 active, 2 scheduled."""
        rows: list[tuple[StoredMessage, int]] = [(e, 0) for e in entity.available]
        rows += [(lock.entry, 0) for lock in entity.locks.values()]
        rows += [(entry, 2) for _, entry in entity.scheduled.values()]
        rows = [row for row in rows if row[0].sequence_number >= from_sequence]
        rows.sort(key=lambda row: row[0].sequence_number)
        return rows[: max(0, count)]
