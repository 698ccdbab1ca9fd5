"""The state port: everything guestwarden must remember between invocations.

Azure Functions are stateless and at-least-once: a queue message can be delivered twice, a timer can overlap
its previous run, a worker can die half-way through an action. The flows stay correct only if they remember
three things durably, and this module names them as one small async interface with three faces:

- `RecordStore`: key/value records (watermarks, delta links, subscription ids) with optimistic concurrency,
  so two overlapping timer runs cannot silently overwrite each other's progress.
- `Ledger`: an idempotency ledger with an atomic `claim`, so an action (license a guest, e-mail a notice,
  open a ticket) runs at most once per (action, subject, scope) even when messages are duplicated, and a
  crashed worker's lease expires instead of blocking the action forever.
- `AuditLog`: an append-only log of every action or decision, queryable by time, subject and action.

`StateStore` is all three; services depend on the narrowest face they need. Adapters (shared/adapters/state/):
`sqlite.SqliteStateStore` (embedded, demo/local) and `table.TableStateStore` (Azure Table Storage, production);
the fake for fast service-layer tests is tests/fakes/state.py. One contract suite
(tests/integration/test_state_contract.py) runs against all three, so a service tested on the fake behaves the
same in Azure. docs/state.md has the design.

Values are JSON objects and are limited to `MAX_JSON_BYTES` by every adapter (Table Storage's per-property
limit), so a value that is accepted in a unit test is also accepted in production.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Literal, Self, TypeAlias

__all__ = [
    "ANY_ETAG",
    "JSON",
    "MAX_JSON_BYTES",
    "MAX_KEY_LENGTH",
    "AuditEntry",
    "AuditLog",
    "Claim",
    "ClaimStatus",
    "ConflictError",
    "InvalidKeyError",
    "InvalidValueError",
    "JSONInput",
    "JSONObject",
    "LeaseLostError",
    "Ledger",
    "Record",
    "RecordStore",
    "StateError",
    "StateStore",
    "StateUnavailableError",
    "ValueTooLargeError",
    "claim_or_wait",
    "exclusively",
]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]
"""A JSON object as the store hands it back (freshly decoded: yours to mutate)."""
JSONInput: TypeAlias = Mapping[str, object]
"""A JSON object as the store accepts it. Typed loosely (dict is invariant, so `dict[str, str]` is not a
`dict[str, JSON]`); checked at run time: anything json.dumps refuses raises InvalidValueError."""

ANY_ETAG: Literal["*"] = "*"
"""`put`/`delete` with this etag act unconditionally (last writer wins)."""

MAX_JSON_BYTES = 64 * 1024
"""Largest encoded JSON value (UTF-16 bytes, as Table Storage counts a string property)."""

MAX_KEY_LENGTH = 256
"""Longest kind, key, action, subject or scope, in characters."""


# --- errors -------------------------------------------------------------------------------------------------


class StateError(Exception):
    """Base of every error the state port raises; adapters translate their driver's errors into these."""


class ConflictError(StateError):
    """A concurrency precondition failed: the record exists (create-only), or its etag no longer matches
    (someone else wrote it since you read it), or it is gone. Re-read and decide again."""


class LeaseLostError(ConflictError):
    """`complete` on a claim that is no longer yours: the lease expired and another worker took it over,
    or it was released. The action may have run twice; the new holder owns the outcome."""


class InvalidKeyError(StateError, ValueError):
    """A kind, key, action, subject or scope is empty, too long, or not a string."""


class InvalidValueError(StateError, ValueError):
    """A value is not a JSON object (dict with string keys and JSON values; NaN/Infinity not allowed)."""


class ValueTooLargeError(InvalidValueError):
    """An encoded JSON value exceeds `MAX_JSON_BYTES` (Table Storage's 64 KiB string property limit)."""


class StateUnavailableError(StateError):
    """The backing store failed or could not be reached (network, authentication, disk). Retry later."""


# --- records ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One key/value record. `etag` is opaque: pass it back to `put`/`delete` to write only if unchanged."""

    kind: str
    key: str
    value: JSONObject
    etag: str


# --- ledger -------------------------------------------------------------------------------------------------


class ClaimStatus(enum.StrEnum):
    """What `Ledger.claim` decided."""

    WON = "won"
    """You hold the lease: act now, then `complete` (success) or `release` (failed, let it be retried)."""
    DONE = "done"
    """Completed earlier: do not act again. `Claim.outcome` holds what was recorded."""
    HELD = "held"
    """Another worker holds a live lease (until `Claim.lease_expires_at`): retry later."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of `Ledger.claim`, and the ticket you hand back to `complete`/`release` when WON."""

    status: ClaimStatus
    action: str
    subject: str
    scope: str
    owner: str
    """Who asked for this claim."""
    holder: str | None
    """Who holds (HELD, WON) or completed (DONE) the entry."""
    lease_expires_at: datetime | None
    """When the current lease ends (WON, HELD); None when DONE."""
    attempt: int
    """How many times this entry has been won, including this one (>1 after a takeover or a release)."""
    outcome: JSONObject | None = None
    """The outcome recorded by `complete` (DONE only)."""
    token: str = field(default="", repr=False)
    """The adapter's proof of ownership (WON only); opaque."""

    @property
    def won(self) -> bool:
        return self.status is ClaimStatus.WON

    @property
    def done(self) -> bool:
        return self.status is ClaimStatus.DONE

    @property
    def held(self) -> bool:
        return self.status is ClaimStatus.HELD


# --- audit --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One action or decision, as an operator would want to read it later."""

    at: datetime
    """When it happened (aware; stored as UTC)."""
    actor: str
    """Which job did it, e.g. "stale-sweep", "license-processor"."""
    action: str
    """What was done, e.g. "disable", "assign-license", "notify"."""
    subject: str
    """Whom it was done to (a user object id)."""
    reason: str
    dry_run: bool
    outcome: str
    """How it ended, e.g. "done", "skipped", "failed", "would-do"."""
    evidence: JSONInput = field(default_factory=dict)
    """Facts the decision rested on (last sign-in, thresholds, Graph request ids ...)."""
    correlation_id: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """The entry's own identity, fixed when it is built. A completion's outbox is appended under it, so a
    flush repeated or raced stores the entry once (every adapter); SQLite and the fake also store a plain
    `append` of the same entry once. Entries stored before ids existed read back with an empty id."""


# --- the ports ----------------------------------------------------------------------------------------------


class RecordStore(abc.ABC):
    """Key/value records with optimistic concurrency."""

    @abc.abstractmethod
    async def get(self, kind: str, key: str) -> Record | None:
        """The record, or None when there is none."""

    @abc.abstractmethod
    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        """Write a record and return its new etag. `etag` is required, to make the concurrency choice explicit:

        - None: create only; ConflictError if the record exists.
        - an etag from `get`/`put`: replace only if unchanged; ConflictError if it changed or is gone.
        - `ANY_ETAG` ("*"): create or replace unconditionally.
        """

    @abc.abstractmethod
    async def delete(self, kind: str, key: str, *, etag: str = ANY_ETAG) -> None:
        """Delete a record. With an etag: ConflictError if the record changed. Deleting a missing record is a
        no-op (whatever the etag), so retries are safe."""

    @abc.abstractmethod
    def list_records(self, kind: str) -> AsyncIterator[Record]:
        """Every record of one kind, in no particular order."""


class Ledger(abc.ABC):
    """Idempotency ledger: run each (action, subject, scope) at most once, with crash-safe leases."""

    @abc.abstractmethod
    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Claim:
        """Try to take (action, subject, scope) for `owner` for `lease_seconds`. Atomic: of any number of
        concurrent claimers at most one gets WON. A claim that was released, or whose lease expired, can be
        won again (takeover). Not re-entrant: the same owner claiming a live lease again gets HELD."""

    @abc.abstractmethod
    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        """Mark a WON claim as done with its outcome; later claims get DONE. Returns the DONE claim.
        LeaseLostError if the lease was taken over meanwhile (then the new holder records the outcome).

        With `audit`, the entry is part of the same state write: once `complete` has written anything, the
        completion and the audit entry are both durable, or the entry is pending in the ledger entry itself (an
        outbox, where ledger and audit log cannot share a transaction) and is appended by whoever comes next:
        this call a moment later, a `claim` that reads the entry, or `flush_outbox`. Never lost, never twice
        (the entry's id makes the append idempotent). A process killed before the write leaves neither."""

    async def flush_outbox(self) -> int:
        """Append every audit entry a completion left pending (its process died between the ledger write and
        the append); returns how many were appended now. Services call it when they start: cheap, safe to
        call any time and concurrently. Adapters that write both in one transaction have nothing to flush."""
        return 0

    @abc.abstractmethod
    async def release(self, claim: Claim) -> bool:
        """Give a WON claim up (the action failed and may be retried): the next claim wins at once.
        Returns False, without error, when the lease had already been lost."""


class AuditLog(abc.ABC):
    """Append-only audit log. Nothing in the API updates or deletes an entry."""

    @abc.abstractmethod
    async def append(self, entry: AuditEntry) -> None:
        """Record one entry."""

    @abc.abstractmethod
    def query(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        subject: str | None = None,
        action: str | None = None,
    ) -> AsyncIterator[AuditEntry]:
        """Entries with since <= at < until (until None: no upper bound), optionally only one subject and/or
        action, in time order (entries with the same `at` in the order they were appended where the backend
        can tell; Table Storage cannot across processes)."""


class StateStore(RecordStore, Ledger, AuditLog, abc.ABC):
    """All of guestwarden's durable state. Use as an async context manager, or call `close()`."""

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


# --- helpers for the services ------------------------------------------------------------------------------


HELD_WAIT_SECONDS = 60.0
HELD_POLL_SECONDS = 2.0


async def claim_or_wait(
    ledger: Ledger,
    action: str,
    subject: str,
    scope: str,
    *,
    owner: str,
    lease_seconds: int,
    sleep: Callable[[float], Awaitable[None]],
    wait_seconds: float = HELD_WAIT_SECONDS,
) -> Claim:
    """`claim`, but while another worker holds the entry, wait (bounded) for it to finish or for its lease to
    run out before answering HELD. A queue message whose claim is HELD fails and is redelivered at once: without
    the wait, a handful of deliveries in a row dead-letters it (the work is lost) long before a dead holder's
    lease expires. `wait_seconds` x the queue's maxDeliveryCount should exceed the lease."""
    waited = 0.0
    while True:
        claim = await ledger.claim(action, subject, scope, owner=owner, lease_seconds=lease_seconds)
        if not claim.held or waited >= wait_seconds:
            return claim
        await sleep(HELD_POLL_SECONDS)
        waited += HELD_POLL_SECONDS


@contextlib.asynccontextmanager
async def exclusively(ledger: Ledger, job: str, subject: str, *, owner: str, lease_seconds: int) -> AsyncIterator[bool]:
    """Run a recurring job one at a time (timers overlap, instances scale out): yields True for the run that
    got the lease, False for the others. The claim is released, not completed, so the next run can take it;
    a run that dies leaves a lease that expires."""
    claim = await ledger.claim(job, subject, "singleton", owner=owner, lease_seconds=lease_seconds)
    if not claim.won:
        yield False
        return
    try:
        yield True
    finally:
        await ledger.release(claim)
