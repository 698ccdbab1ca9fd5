"""An in-memory `StateStore`: the fake the service-layer unit tests run against.

It keeps the contract of the real adapters (same errors, same size limits, values copied through JSON so a
caller mutating a dict after `put` changes nothing), and passes the same contract suite. Every operation's
critical section is synchronous under one lock, so it is safe for any number of concurrent tasks (and
threads); each call first yields to the event loop, so concurrency tests really interleave.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.adapters.state import (
    LEDGER_DONE,
    LEDGER_HELD,
    LEDGER_RELEASED,
    OutboxHook,
    as_utc,
    check_audit_entry,
    check_etag,
    check_lease,
    check_name,
    check_won,
    decode_json,
    encode_json,
    ledger_verdict,
)
from shared.ports.clock import Clock, utc_now
from shared.ports.state import (
    ANY_ETAG,
    AuditEntry,
    Claim,
    ClaimStatus,
    ConflictError,
    JSONInput,
    LeaseLostError,
    Record,
    StateStore,
)
from tests.waiting import give_way


@dataclass
class _LedgerEntry:
    status: str
    holder: str
    token: str
    lease_expires_at: datetime | None
    attempt: int
    outcome: str | None = None


class MemoryStateStore(OutboxHook, StateStore):
    """State kept in dicts; gone when the object is. `complete(..., audit=...)` writes both under one lock."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, key) -> (json, etag)
        self._ledger: dict[tuple[str, str, str], _LedgerEntry] = {}
        self._audit: list[tuple[datetime, int, AuditEntry, str]] = []  # (at, seq, entry, evidence json)
        self._audit_ids: set[str] = set()

    # --- records --------------------------------------------------------------------------------------------

    async def get(self, kind: str, key: str) -> Record | None:
        check_name("kind", kind)
        check_name("key", key)
        await give_way()
        with self._lock:
            stored = self._records.get((kind, key))
        if stored is None:
            return None
        return Record(kind, key, decode_json(stored[0]), stored[1])

    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        check_name("kind", kind)
        check_name("key", key)
        check_etag(etag)
        text = encode_json(f"value of {kind}/{key}", value)
        await give_way()
        new_etag = uuid.uuid4().hex
        with self._lock:
            current = self._records.get((kind, key))
            if etag is None and current is not None:
                raise ConflictError(f"record {kind}/{key} already exists")
            if etag not in (None, ANY_ETAG) and (current is None or current[1] != etag):
                state = "is gone" if current is None else "was changed by someone else"
                raise ConflictError(f"record {kind}/{key} {state} (etag mismatch)")
            self._records[(kind, key)] = (text, new_etag)
        return new_etag

    async def delete(self, kind: str, key: str, *, etag: str = ANY_ETAG) -> None:
        check_name("kind", kind)
        check_name("key", key)
        check_etag(etag)
        await give_way()
        with self._lock:
            current = self._records.get((kind, key))
            if current is None:
                return
            if etag != ANY_ETAG and current[1] != etag:
                raise ConflictError(f"record {kind}/{key} was changed by someone else (etag mismatch)")
            del self._records[(kind, key)]

    async def list_records(self, kind: str) -> AsyncIterator[Record]:
        check_name("kind", kind)
        with self._lock:
            snapshot = [(key, text, etag) for (k, key), (text, etag) in self._records.items() if k == kind]
        for key, text, etag in snapshot:
            yield Record(kind, key, decode_json(text), etag)

    # --- ledger ---------------------------------------------------------------------------------------------

    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Claim:
        ident = (check_name("action", action), check_name("subject", subject), check_name("scope", scope))
        check_name("owner", owner)
        lease = timedelta(seconds=check_lease(lease_seconds))
        await give_way()
        with self._lock:
            now = as_utc("clock()", self._clock())
            entry = self._ledger.get(ident)
            base = Claim(ClaimStatus.WON, action, subject, scope, owner, owner, now + lease, 1)
            if entry is not None:
                verdict = ledger_verdict(entry.status, entry.lease_expires_at, now)
                if verdict == "done":
                    outcome = decode_json(entry.outcome) if entry.outcome is not None else {}
                    return replace(
                        base,
                        status=ClaimStatus.DONE,
                        holder=entry.holder,
                        lease_expires_at=None,
                        attempt=entry.attempt,
                        outcome=outcome,
                    )
                if verdict == "held":
                    return replace(
                        base,
                        status=ClaimStatus.HELD,
                        holder=entry.holder,
                        lease_expires_at=entry.lease_expires_at,
                        attempt=entry.attempt,
                    )
                base = replace(base, attempt=entry.attempt + 1)
            token = uuid.uuid4().hex
            self._ledger[ident] = _LedgerEntry(LEDGER_HELD, owner, token, base.lease_expires_at, base.attempt)
            return replace(base, token=token)

    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        check_won(claim, "complete")
        text = encode_json("outcome", outcome)
        checked = (audit, *check_audit_entry(audit)) if audit is not None else None
        await give_way()
        with self._lock:
            entry = self._entry_held_by(claim)
            if entry is None:
                raise LeaseLostError(
                    f"claim {claim.action}/{claim.subject}/{claim.scope} is no longer held by {claim.owner}"
                )
            entry.status, entry.outcome, entry.lease_expires_at = LEDGER_DONE, text, None
            if checked is not None:
                self._store_audit(*checked)
        self._after_ledger_write()
        return replace(claim, status=ClaimStatus.DONE, lease_expires_at=None, outcome=decode_json(text), token="")

    async def release(self, claim: Claim) -> bool:
        check_won(claim, "release")
        await give_way()
        with self._lock:
            entry = self._entry_held_by(claim)
            if entry is None:
                return False
            entry.status, entry.lease_expires_at = LEDGER_RELEASED, None
            return True

    def _entry_held_by(self, claim: Claim) -> _LedgerEntry | None:
        entry = self._ledger.get((claim.action, claim.subject, claim.scope))
        if entry is None or entry.status != LEDGER_HELD or entry.token != claim.token:
            return None
        return entry

    # --- audit ----------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> None:
        at, evidence = check_audit_entry(entry)
        await give_way()
        with self._lock:
            self._store_audit(entry, at, evidence)

    def _store_audit(self, entry: AuditEntry, at: datetime, evidence: str) -> None:
        """Under the lock: append, unless an entry with the same id is stored already."""
        if entry.id in self._audit_ids:
            return
        self._audit_ids.add(entry.id)
        self._audit.append((at, len(self._audit), replace(entry, at=at, evidence={}), evidence))

    async def query(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        subject: str | None = None,
        action: str | None = None,
    ) -> AsyncIterator[AuditEntry]:
        start = as_utc("since", since)
        end = as_utc("until", until) if until is not None else None
        with self._lock:
            snapshot = sorted(self._audit, key=lambda item: (item[0], item[1]))
        for at, _, entry, evidence in snapshot:
            if at < start or (end is not None and at >= end):
                continue
            if (subject is not None and entry.subject != subject) or (action is not None and entry.action != action):
                continue
            yield replace(entry, evidence=decode_json(evidence))
