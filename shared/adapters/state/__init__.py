"""Helpers shared by the state adapters (validation, JSON encoding, the one ledger rule).

The port itself (RecordStore, Ledger, AuditLog, StateStore, their types and errors) is shared/ports/state.py;
the adapters here implement it: `sqlite.SqliteStateStore` (embedded, demo/local) and `table.TableStateStore`
(Azure Table Storage, production). docs/state.md has the design.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal, TypeAlias

from shared.ports.state import (
    MAX_JSON_BYTES,
    MAX_KEY_LENGTH,
    AuditEntry,
    Claim,
    ClaimStatus,
    ConflictError,
    InvalidKeyError,
    InvalidValueError,
    JSONObject,
    StateError,
    ValueTooLargeError,
)


def check_name(what: str, value: object) -> str:
    """Validate a kind, key, action, subject or scope; return it."""
    if not isinstance(value, str):
        raise InvalidKeyError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidKeyError(f"{what} must not be empty")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{what} is {len(value)} characters long; the limit is {MAX_KEY_LENGTH}")
    return value


def check_etag(etag: object) -> None:
    if etag is not None and (not isinstance(etag, str) or not etag):
        raise ConflictError(f"etag must be None, '*' or an etag returned by the store, got {etag!r}")


def encode_json(what: str, value: object) -> str:
    """Encode a JSON object compactly, refusing non-objects, NaN and values over `MAX_JSON_BYTES`."""
    if not isinstance(value, Mapping):
        raise InvalidValueError(f"{what} must be a JSON object (dict), got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidValueError(f"{what} is not JSON-serialisable: {error}") from error
    size = len(text.encode("utf-16-le"))
    if size > MAX_JSON_BYTES:
        raise ValueTooLargeError(
            f"{what} is {size} bytes as JSON (UTF-16); the limit is {MAX_JSON_BYTES} bytes "
            "(Azure Table Storage's string property limit). Store less, or split it over several records."
        )
    return text


def decode_json(text: str) -> JSONObject:
    value = json.loads(text)
    if not isinstance(value, dict):  # pragma: no cover - only ever written by encode_json
        raise StateError(f"stored value is not a JSON object: {text[:80]!r}")
    return value


def check_text(what: str, value: object) -> str:
    """Free text stored in one property (an audit reason): a string within the size limit."""
    if not isinstance(value, str):
        raise InvalidValueError(f"{what} must be a string, got {type(value).__name__}")
    if len(value.encode("utf-16-le")) > MAX_JSON_BYTES:
        raise ValueTooLargeError(f"{what} is larger than {MAX_JSON_BYTES} bytes (UTF-16)")
    return value


def as_utc(what: str, moment: datetime) -> datetime:
    """An aware datetime converted to UTC; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(moment, datetime):
        raise InvalidValueError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def check_lease(lease_seconds: object) -> int:
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, int) or lease_seconds <= 0:
        raise ValueError(f"lease_seconds must be a positive int, got {lease_seconds!r}")
    return lease_seconds


def check_audit_entry(entry: AuditEntry) -> tuple[datetime, str]:
    """Validate an entry before it is stored; returns (at in UTC, encoded evidence)."""
    at = as_utc("AuditEntry.at", entry.at)
    for name in ("actor", "action", "subject", "id"):
        check_name(f"AuditEntry.{name}", getattr(entry, name))
    check_text("AuditEntry.reason", entry.reason)
    check_text("AuditEntry.outcome", entry.outcome)
    check_text("AuditEntry.correlation_id", entry.correlation_id)
    if not isinstance(entry.dry_run, bool):
        raise InvalidValueError("AuditEntry.dry_run must be a bool")
    return at, encode_json("AuditEntry.evidence", entry.evidence)


class OutboxHook:
    """A test seam of every adapter: `crash_after_ledger_write` is called after `complete(..., audit=...)` has
    written the ledger and before the audit entry is appended (where the two writes are one transaction:
    after both). Raising from it is a process killed at that point. None (always, in production): nothing."""

    crash_after_ledger_write: Callable[[], None] | None = None

    def _after_ledger_write(self) -> None:
        if self.crash_after_ledger_write is not None:
            self.crash_after_ledger_write()


def check_won(claim: Claim, operation: str) -> None:
    if not isinstance(claim, Claim) or claim.status is not ClaimStatus.WON or not claim.token:
        status = claim.status if isinstance(claim, Claim) else type(claim).__name__
        raise ValueError(f"{operation} needs a claim that was WON, got {status}")


LedgerVerdict: TypeAlias = Literal["done", "held", "take"]


def ledger_verdict(status: str, lease_expires_at: datetime | None, now: datetime) -> LedgerVerdict:
    """What a claim does with an existing ledger entry: report DONE, report HELD, or take it (the entry was
    released, or its lease expired: the holder is presumed dead). The one rule every adapter shares."""
    if status == LEDGER_DONE:
        return "done"
    if status == LEDGER_HELD and lease_expires_at is not None and lease_expires_at > now:
        return "held"
    return "take"


LEDGER_HELD = "held"
LEDGER_DONE = "done"
LEDGER_RELEASED = "released"
