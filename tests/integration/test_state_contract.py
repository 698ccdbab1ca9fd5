"""One contract for the state port, run against every adapter: in-memory, SQLite (a file) and Table (Azurite).

A service unit-tested on the in-memory fake must behave the same on SQLite and in Azure, so every behaviour
the services rely on is pinned here once. Time comes from a fake clock, never from sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest

from shared.adapters.state.sqlite import SqliteStateStore
from shared.adapters.state.table import TableStateStore
from shared.ports.state import (
    ANY_ETAG,
    MAX_JSON_BYTES,
    AuditEntry,
    Claim,
    ClaimStatus,
    ConflictError,
    InvalidKeyError,
    InvalidValueError,
    LeaseLostError,
    StateError,
    StateStore,
    ValueTooLargeError,
)
from tests.fakes.state import MemoryStateStore

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2025, 3, 1, 23, 59, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Backend:
    """The store under test, plus a way to open more stores on the same storage (other "workers")."""

    name: str
    store: StateStore
    clock: FakeClock
    _open: Callable[[], StateStore]
    _extra: list[StateStore] = field(default_factory=list)

    def another(self) -> StateStore:
        store = self._open()
        self._extra.append(store)
        return store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite", pytest.param("table", marks=pytest.mark.azurite)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    open_store: Callable[[], StateStore]
    if request.param == "memory":
        shared = MemoryStateStore(clock=clock)
        open_store = lambda: shared  # noqa: E731 - one process-local store: "another worker" is the same one
    elif request.param == "sqlite":
        path = tmp_path / "nested" / "state.db"
        open_store = lambda: SqliteStateStore(path, clock=clock)  # noqa: E731
    else:
        connection = request.getfixturevalue("azurite").connection_string
        prefix = f"t{uuid.uuid4().hex[:12]}"
        open_store = lambda: TableStateStore(  # noqa: E731
            connection_string=connection, table_prefix=prefix, clock=clock
        )
    backend = Backend(request.param, open_store(), clock, open_store)
    try:
        yield backend
    finally:
        if isinstance(backend.store, TableStateStore):
            await backend.store.drop_tables()
        for store in {id(s): s for s in [backend.store, *backend._extra]}.values():
            await store.close()


T = TypeVar("T")


async def collect(iterator: AsyncIterator[T]) -> list[T]:
    return [item async for item in iterator]


# --- records ------------------------------------------------------------------------------------------------


async def test_record_create_get_replace_delete(backend: Backend) -> None:
    store = backend.store
    assert await store.get("watermark", "signins") is None

    etag1 = await store.put("watermark", "signins", {"at": "2025-03-01T00:00:00Z", "n": [1, 2]}, etag=None)
    record = await store.get("watermark", "signins")
    assert record is not None
    assert (record.kind, record.key, record.value, record.etag) == (
        "watermark",
        "signins",
        {"at": "2025-03-01T00:00:00Z", "n": [1, 2]},
        etag1,
    )

    with pytest.raises(ConflictError):
        await store.put("watermark", "signins", {"at": "other"}, etag=None)

    etag2 = await store.put("watermark", "signins", {"at": "2025-03-02"}, etag=etag1)
    assert etag2 != etag1
    with pytest.raises(ConflictError):  # stale etag: someone (we) wrote since
        await store.put("watermark", "signins", {"at": "lost update"}, etag=etag1)
    record = await store.get("watermark", "signins")
    assert record is not None and record.value == {"at": "2025-03-02"}

    etag3 = await store.put("watermark", "signins", {"at": "forced"}, etag=ANY_ETAG)
    assert etag3 not in (etag1, etag2)

    with pytest.raises(ConflictError):
        await store.delete("watermark", "signins", etag=etag2)
    assert await store.get("watermark", "signins") is not None
    await store.delete("watermark", "signins", etag=etag3)
    assert await store.get("watermark", "signins") is None
    await store.delete("watermark", "signins", etag=etag3)  # missing: a no-op, so retries are safe
    await store.delete("watermark", "signins")

    with pytest.raises(ConflictError):  # replace-if-match on a record that is gone
        await store.put("watermark", "signins", {"x": 1}, etag=etag3)
    assert await store.put("watermark", "signins", {"x": 2}, etag=ANY_ETAG)  # upsert creates


async def test_recreated_record_gets_a_fresh_etag(backend: Backend) -> None:
    store = backend.store
    old = await store.put("k", "a", {"v": 1}, etag=None)
    await store.delete("k", "a")
    new = await store.put("k", "a", {"v": 1}, etag=None)
    assert new != old
    with pytest.raises(ConflictError):
        await store.put("k", "a", {"v": 2}, etag=old)


async def test_list_records_of_one_kind(backend: Backend) -> None:
    store = backend.store
    for key in ["b", "a", "c"]:
        await store.put("deltalink", key, {"key": key}, etag=None)
    await store.put("subscription", "a", {"other": True}, etag=None)
    records = await collect(store.list_records("deltalink"))
    assert sorted((r.key, r.value["key"]) for r in records) == [("a", "a"), ("b", "b"), ("c", "c")]
    assert all(r.kind == "deltalink" and r.etag for r in records)
    assert await collect(store.list_records("nothing-here")) == []


async def test_keys_with_awkward_characters_round_trip(backend: Backend) -> None:
    store = backend.store
    keys = ["a/b#c?d", "back\\slash|pipe%25", "sku:6fd2c87f-b296-42f0-b197-1e91e994b900", "ünïcødé ✓", "it's"]
    for key in keys:
        await store.put("odd kind/#?", key, {"key": key}, etag=None)
    for key in keys:
        record = await store.get("odd kind/#?", key)
        assert record is not None and record.key == key and record.value == {"key": key}
    listed = await collect(store.list_records("odd kind/#?"))
    assert sorted(r.key for r in listed) == sorted(keys)


async def test_values_are_copied_not_shared(backend: Backend) -> None:
    store = backend.store
    value: dict[str, object] = {"nested": {"list": [1, 2]}}
    await store.put("k", "v", value, etag=None)
    value["nested"] = "mutated after put"
    record = await store.get("k", "v")
    assert record is not None
    assert record.value == {"nested": {"list": [1, 2]}}


async def test_only_one_of_concurrent_replaces_with_the_same_etag_wins(backend: Backend) -> None:
    store = backend.store
    etag = await store.put("watermark", "race", {"n": 0}, etag=None)

    async def bump(n: int) -> bool:
        try:
            await store.put("watermark", "race", {"n": n}, etag=etag)
        except ConflictError:
            return False
        return True

    results = await asyncio.gather(*(bump(n) for n in range(1, 21)))
    assert results.count(True) == 1


async def test_invalid_values_and_keys_are_refused_clearly(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(InvalidValueError, match="JSON object"):
        await store.put("k", "a", ["not", "an", "object"], etag=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="JSON"):
        await store.put("k", "a", {"when": datetime.now(UTC)}, etag=None)
    with pytest.raises(InvalidValueError):
        await store.put("k", "a", {"nan": float("nan")}, etag=None)
    with pytest.raises(InvalidKeyError, match="empty"):
        await store.get("k", "")
    with pytest.raises(InvalidKeyError, match="limit"):
        await store.get("k", "x" * 1000)
    assert await store.get("k", "a") is None  # nothing was written by the refused calls


async def test_too_large_value_is_a_clear_error(backend: Backend) -> None:
    store = backend.store
    # Just under the limit is accepted (and, on Table Storage, really stored) ...
    fits = {"blob": "x" * (MAX_JSON_BYTES // 2 - 20)}
    await store.put("big", "fits", fits, etag=None)
    record = await store.get("big", "fits")
    assert record is not None and record.value == fits
    # ... one step over is refused with an error that names the limit, before anything is written.
    with pytest.raises(ValueTooLargeError, match=r"65536 bytes"):
        await store.put("big", "too-big", {"blob": "x" * (MAX_JSON_BYTES // 2)}, etag=None)
    assert await store.get("big", "too-big") is None
    assert issubclass(ValueTooLargeError, StateError)


# --- ledger -------------------------------------------------------------------------------------------------


async def test_claim_won_then_done_after_complete(backend: Backend) -> None:
    store = backend.store
    claim = await store.claim("license", "user-1", "sku:abc", owner="worker-a", lease_seconds=60)
    assert claim.status is ClaimStatus.WON and claim.won
    assert (claim.action, claim.subject, claim.scope, claim.owner, claim.holder) == (
        "license",
        "user-1",
        "sku:abc",
        "worker-a",
        "worker-a",
    )
    assert claim.attempt == 1
    assert claim.lease_expires_at == T0 + timedelta(seconds=60)

    done = await store.complete(claim, {"assigned": "abc", "seats_left": 4})
    assert done.status is ClaimStatus.DONE and done.outcome == {"assigned": "abc", "seats_left": 4}

    again = await store.claim("license", "user-1", "sku:abc", owner="worker-b", lease_seconds=60)
    assert again.status is ClaimStatus.DONE and again.done
    assert again.outcome == {"assigned": "abc", "seats_left": 4}
    assert again.holder == "worker-a"

    backend.clock.advance(10 * 365 * 86400)  # done stays done, whatever the time
    later = await store.claim("license", "user-1", "sku:abc", owner="worker-c", lease_seconds=60)
    assert later.status is ClaimStatus.DONE

    # Other scopes, subjects and actions are independent.
    other = [
        await store.claim("license", "user-1", "sku:other", owner="w", lease_seconds=60),
        await store.claim("license", "user-2", "sku:abc", owner="w", lease_seconds=60),
        await store.claim("notify", "user-1", "sku:abc", owner="w", lease_seconds=60),
    ]
    assert [c.status for c in other] == [ClaimStatus.WON] * 3


async def test_claim_held_while_another_holds_a_live_lease(backend: Backend) -> None:
    store = backend.store
    first = await store.claim("notify", "user-1", "incident:9", owner="worker-a", lease_seconds=30)
    assert first.won

    held = await store.claim("notify", "user-1", "incident:9", owner="worker-b", lease_seconds=30)
    assert held.status is ClaimStatus.HELD and held.held
    assert held.holder == "worker-a"
    assert held.lease_expires_at == T0 + timedelta(seconds=30)
    assert held.outcome is None

    backend.clock.advance(29)
    assert (await store.claim("notify", "user-1", "incident:9", owner="worker-b", lease_seconds=30)).held
    # Not re-entrant: the holder asking again is told it is held, too.
    assert (await store.claim("notify", "user-1", "incident:9", owner="worker-a", lease_seconds=30)).held
    with pytest.raises(ValueError, match="WON"):
        await store.complete(held, {"x": 1})


async def test_expired_lease_is_taken_over_and_the_old_holder_loses_it(backend: Backend) -> None:
    store = backend.store
    crashed = await store.claim("ticket", "user-1", "incident:7", owner="worker-a", lease_seconds=30)
    assert crashed.won

    backend.clock.advance(30)  # the lease ends exactly now: the holder is presumed dead
    taken = await store.claim("ticket", "user-1", "incident:7", owner="worker-b", lease_seconds=30)
    assert taken.status is ClaimStatus.WON
    assert taken.attempt == 2 and taken.holder == "worker-b"
    assert taken.lease_expires_at == backend.clock.now + timedelta(seconds=30)

    # The old holder wakes up: it can neither record an outcome nor release the new holder's lease.
    with pytest.raises(LeaseLostError):
        await store.complete(crashed, {"ticket": "T-1"})
    assert await store.release(crashed) is False
    assert (await store.claim("ticket", "user-1", "incident:7", owner="worker-c", lease_seconds=30)).held

    done = await store.complete(taken, {"ticket": "T-2"})
    assert done.outcome == {"ticket": "T-2"}
    final = await store.claim("ticket", "user-1", "incident:7", owner="worker-c", lease_seconds=30)
    assert final.done and final.outcome == {"ticket": "T-2"} and final.holder == "worker-b"
    assert final.attempt == 2


async def test_release_lets_the_next_claim_win_at_once(backend: Backend) -> None:
    store = backend.store
    first = await store.claim("license", "user-9", "sku:x", owner="worker-a", lease_seconds=300)
    assert await store.release(first) is True
    assert await store.release(first) is False  # already released

    second = await store.claim("license", "user-9", "sku:x", owner="worker-b", lease_seconds=300)
    assert second.won and second.attempt == 2
    with pytest.raises(LeaseLostError):
        await store.complete(first, {"x": 1})
    await store.complete(second, {"ok": True})
    assert (await store.claim("license", "user-9", "sku:x", owner="worker-a", lease_seconds=300)).done


async def test_claim_arguments_are_checked(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(ValueError, match="lease_seconds"):
        await store.claim("a", "s", "c", owner="o", lease_seconds=0)
    with pytest.raises(InvalidKeyError):
        await store.claim("a", "", "c", owner="o", lease_seconds=10)
    claim = await store.claim("a", "s", "c", owner="o", lease_seconds=10)
    with pytest.raises(ValueTooLargeError):
        await store.complete(claim, {"blob": "x" * MAX_JSON_BYTES})
    assert (await store.claim("a", "s", "c", owner="p", lease_seconds=10)).held  # still ours, still held
    not_won = Claim(ClaimStatus.HELD, "a", "s", "c", "o", "o", None, 1)
    with pytest.raises(ValueError, match="WON"):
        await store.release(not_won)


@pytest.mark.timeout(60)
async def test_fifty_concurrent_claimers_exactly_one_wins(backend: Backend) -> None:
    # Several stores on the same storage (for SQLite: separate connections and threads on one file; for
    # Table: separate clients), each with its share of the 50 claimers.
    stores = [backend.store, *(backend.another() for _ in range(4))]

    async def run(action: str) -> list[Claim]:
        return await asyncio.gather(
            *(
                stores[n % len(stores)].claim(action, "user-1", "sku:1", owner=f"worker-{n}", lease_seconds=60)
                for n in range(50)
            )
        )

    claims = await run("license")
    won = [c for c in claims if c.won]
    assert len(won) == 1
    assert all(c.held and c.holder == won[0].owner for c in claims if not c.won)

    # The same race on a takeover: an expired lease, 50 claimers, still exactly one winner.
    backend.clock.advance(61)
    claims = await run("license")
    won_again = [c for c in claims if c.won]
    assert len(won_again) == 1 and won_again[0].attempt == 2
    with pytest.raises(LeaseLostError):
        await backend.store.complete(won[0], {"late": True})


# --- audit --------------------------------------------------------------------------------------------------


def entry(at: datetime, subject: str = "user-1", action: str = "disable", **overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "at": at,
        "actor": "stale-sweep",
        "action": action,
        "subject": subject,
        "reason": "inactive 190 days (threshold 180)",
        "dry_run": False,
        "outcome": "done",
        "evidence": {"lastSignIn": "2024-08-01T00:00:00Z", "threshold_days": 180},
        "correlation_id": "run-1",
    }
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


async def test_audit_append_and_query_in_time_order(backend: Backend) -> None:
    store = backend.store
    # Appended out of order, across a day boundary (T0 is 23:59 UTC) and with a non-UTC offset.
    plus_two = datetime(2025, 3, 2, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # = T0 + 90 s
    await store.append(entry(T0 + timedelta(seconds=120), subject="user-3", action="delete"))
    await store.append(entry(T0, subject="user-1", action="warn", dry_run=True, outcome="would-do"))
    await store.append(entry(T0 + timedelta(seconds=30, microseconds=123456), subject="user-2"))
    await store.append(entry(plus_two, subject="user-1", reason=""))

    everything = await collect(store.query(T0 - timedelta(days=1)))
    assert [e.at for e in everything] == [
        T0,
        T0 + timedelta(seconds=30, microseconds=123456),
        T0 + timedelta(seconds=90),
        T0 + timedelta(seconds=120),
    ]
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in everything)
    first = everything[0]
    assert first == entry(T0, subject="user-1", action="warn", dry_run=True, outcome="would-do", id=first.id)
    assert len({e.id for e in everything}) == 4 and all(e.id for e in everything)
    assert everything[2].reason == ""

    # since is inclusive, until exclusive.
    window = await collect(store.query(T0 + timedelta(seconds=30, microseconds=123456), T0 + timedelta(seconds=120)))
    assert [e.subject for e in window] == ["user-2", "user-1"]
    assert [e.subject for e in await collect(store.query(T0, T0))] == []

    assert [e.action for e in await collect(store.query(T0, subject="user-1"))] == ["warn", "disable"]
    assert [e.subject for e in await collect(store.query(T0, action="delete"))] == ["user-3"]
    assert await collect(store.query(T0, subject="user-1", action="delete")) == []
    assert await collect(store.query(T0 + timedelta(days=2))) == []


async def test_audit_entries_with_the_same_time_keep_append_order(backend: Backend) -> None:
    store = backend.store
    for n in range(5):
        await store.append(entry(T0, subject=f"user-{n}", correlation_id=f"c{n}"))
    assert [e.correlation_id for e in await collect(store.query(T0))] == [f"c{n}" for n in range(5)]


async def test_audit_refuses_naive_times_and_oversized_evidence(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(InvalidValueError, match="timezone-aware"):
        await store.append(entry(datetime(2025, 1, 1)))  # naive: the point of the test
    with pytest.raises(ValueTooLargeError):
        await store.append(entry(T0, evidence={"blob": "x" * MAX_JSON_BYTES}))
    with pytest.raises(InvalidValueError, match="timezone-aware"):
        await collect(store.query(datetime(2025, 1, 1)))
    assert await collect(store.query(T0 - timedelta(days=1))) == []


# --- completion + audit entry: one state write (the outbox) ------------------------------------------------


class Killed(BaseException):
    """The process dies here (nothing after it in that process runs)."""


def die_once(store: StateStore) -> None:
    """The next `complete(..., audit=...)` on `store` dies after its ledger write, before the audit append."""

    def crash() -> None:
        store.crash_after_ledger_write = None  # type: ignore[attr-defined]
        raise Killed

    store.crash_after_ledger_write = crash  # type: ignore[attr-defined]


async def test_complete_with_an_audit_entry_makes_both_visible(backend: Backend) -> None:
    store = backend.store
    claim = await store.claim("license", "user-1", "sku:abc", owner="worker-a", lease_seconds=60)
    audit = entry(T0, subject="user-1", action="assign-license")
    done = await store.complete(claim, {"status": "licensed"}, audit=audit)
    assert done.done and done.outcome == {"status": "licensed"}
    assert (await store.claim("license", "user-1", "sku:abc", owner="worker-b", lease_seconds=60)).done
    assert await collect(store.query(T0)) == [audit]
    assert await store.flush_outbox() == 0  # nothing was left pending
    assert await collect(backend.another().query(T0)) == [audit]


async def test_a_crash_after_the_ledger_write_still_ends_with_one_audit_entry(backend: Backend) -> None:
    store = backend.store
    claim = await store.claim("license", "user-1", "sku:abc", owner="worker-a", lease_seconds=60)
    audit = entry(T0, subject="user-1", action="assign-license")
    die_once(store)
    with pytest.raises(Killed):
        await store.complete(claim, {"status": "licensed"}, audit=audit)

    survivor = backend.another()  # the next process
    await survivor.flush_outbox()
    assert (await survivor.claim("license", "user-1", "sku:abc", owner="worker-b", lease_seconds=60)).done
    assert await collect(survivor.query(T0)) == [audit]
    for _ in range(2):  # flushing again, or reading the entry again, never appends a second one
        await survivor.flush_outbox()
        await backend.another().flush_outbox()
        assert (await survivor.claim("license", "user-1", "sku:abc", owner="worker-c", lease_seconds=60)).done
    assert await collect(survivor.query(T0)) == [audit]


async def test_the_next_claim_of_a_completion_left_pending_appends_its_audit_entry(backend: Backend) -> None:
    """No flush_outbox call at all: the redelivered message's claim reads the entry and finishes the append."""
    store = backend.store
    claim = await store.claim("risk-notify", "user-1", "incident-1", owner="worker-a", lease_seconds=60)
    audit = entry(T0, subject="user-1", action="risk-notify", outcome="sent")
    die_once(store)
    with pytest.raises(Killed):
        await store.complete(claim, {"status": "sent"}, audit=audit)
    survivor = backend.another()
    again = await survivor.claim("risk-notify", "user-1", "incident-1", owner="worker-b", lease_seconds=60)
    assert again.done and again.outcome == {"status": "sent"}
    assert await collect(survivor.query(T0)) == [audit]


async def test_concurrent_flushes_append_a_pending_entry_once(backend: Backend) -> None:
    store = backend.store
    audits = []
    for n in range(3):
        claim = await store.claim("license", f"user-{n}", "sku:abc", owner="worker-a", lease_seconds=60)
        audits.append(entry(T0, subject=f"user-{n}", action="assign-license", correlation_id=f"c{n}"))
        die_once(store)
        with pytest.raises(Killed):
            await store.complete(claim, {"status": "licensed"}, audit=audits[-1])
    survivors = [backend.another() for _ in range(3)]
    await asyncio.gather(*(s.flush_outbox() for s in survivors))
    stored = await collect(survivors[0].query(T0))
    assert sorted(e.id for e in stored) == sorted(a.id for a in audits)


async def test_a_completion_with_a_lost_lease_writes_no_audit_entry(backend: Backend) -> None:
    store = backend.store
    claim = await store.claim("license", "user-1", "sku:abc", owner="worker-a", lease_seconds=60)
    backend.clock.advance(61)
    taken = await store.claim("license", "user-1", "sku:abc", owner="worker-b", lease_seconds=60)
    assert taken.won
    with pytest.raises(LeaseLostError):
        await store.complete(claim, {"status": "licensed"}, audit=entry(T0, subject="user-1"))
    await store.flush_outbox()
    assert await collect(store.query(T0)) == []


async def test_an_entry_appended_twice_is_stored_once(backend: Backend) -> None:
    if backend.name == "table":
        pytest.skip("Table Storage dedupes an entry's outbox append only (its RowKey is fixed at completion)")
    once = entry(T0)
    await backend.store.append(once)
    await backend.store.append(once)
    assert await collect(backend.store.query(T0)) == [once]


# --- adapter specifics ----------------------------------------------------------------------------------------


async def test_a_sqlite_file_from_schema_version_1_gains_audit_ids(tmp_path: Path, clock: FakeClock) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, "
            "action TEXT NOT NULL, subject TEXT NOT NULL, reason TEXT NOT NULL, dry_run INTEGER NOT NULL, "
            "outcome TEXT NOT NULL, evidence TEXT NOT NULL, correlation_id TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO audit (at, actor, action, subject, reason, dry_run, outcome, evidence, correlation_id) "
            "VALUES ('2025-03-01T23:59:00.000000Z', 'a', 'old', 's', '', 0, 'done', '{}', '')"
        )
    async with SqliteStateStore(path, clock=clock) as store:
        new = entry(T0 + timedelta(seconds=1))
        await store.append(new)
        await store.append(new)
        assert [(e.action, e.id) for e in await collect(store.query(T0))] == [("old", ""), (new.action, new.id)]


async def test_sqlite_file_survives_reopen_and_audit_is_append_only(tmp_path: Path, clock: FakeClock) -> None:
    import sqlite3

    path = tmp_path / "deep" / "er" / "state.db"
    async with SqliteStateStore(path, clock=clock) as store:
        await store.put("k", "a", {"v": 1}, etag=None)
        claim = await store.claim("a", "s", "c", owner="o", lease_seconds=10)
        await store.complete(claim, {"r": 1})
        await store.append(entry(T0))
    async with SqliteStateStore(path, clock=clock) as store:
        record = await store.get("k", "a")
        assert record is not None and record.value == {"v": 1}
        assert (await store.claim("a", "s", "c", owner="p", lease_seconds=10)).done
        assert len(await collect(store.query(T0))) == 1

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit SET outcome = 'forged'")


async def test_sqlite_memory_database_works(clock: FakeClock) -> None:
    async with SqliteStateStore(":memory:", clock=clock) as store:
        await store.put("k", "a", {"v": 1}, etag=None)
        assert (await store.get("k", "a")) is not None
    with pytest.raises(StateError, match="closed"):
        await store.get("k", "a")


def test_table_store_needs_exactly_one_target_and_a_valid_prefix() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        TableStateStore()
    with pytest.raises(ValueError, match="letters or digits"):
        TableStateStore(connection_string="UseDevelopmentStorage=true", table_prefix="gw-state")
    store = TableStateStore(connection_string="UseDevelopmentStorage=true", table_prefix="gw")
    assert store.table_names == {"records": "gwrecords", "ledger": "gwledger", "audit": "gwaudit"}


@pytest.mark.azurite
async def test_table_store_from_endpoint_and_credential(azurite: object) -> None:
    """The managed-identity path (endpoint + credential object) reaches the service; Azurite takes a key."""
    from azure.core.credentials import AzureNamedKeyCredential

    from tests.fixtures.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite

    assert isinstance(azurite, Azurite)
    store = TableStateStore(
        endpoint=azurite.table_endpoint,
        credential=AzureNamedKeyCredential(ACCOUNT_NAME, ACCOUNT_KEY),  # type: ignore[arg-type]
        table_prefix=f"t{uuid.uuid4().hex[:12]}",
    )
    async with store:
        await store.put("k", "a", {"v": 1}, etag=None)
        assert (await store.get("k", "a")) is not None
        await store.drop_tables()


async def test_table_store_unreachable_is_a_state_error() -> None:
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        ";TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    async with TableStateStore(connection_string=dead, table_prefix="nowhere") as store:
        with pytest.raises(StateError, match="Table Storage"):
            await store.get("k", "a")


_CLAIM_IN_A_PROCESS = """
import asyncio, sys
from shared.adapters.state.sqlite import SqliteStateStore

async def main(path: str, worker: str) -> None:
    async with SqliteStateStore(path) as store:
        claims = await asyncio.gather(
            *(store.claim("license", "user-1", "sku:1", owner=f"{worker}-{n}", lease_seconds=600) for n in range(10))
        )
    print(sum(claim.won for claim in claims))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.timeout(60)
async def test_sqlite_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    """Five processes, ten concurrent claimers each, one file: exactly one winner overall."""
    import sys

    path = tmp_path / "state.db"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CLAIM_IN_A_PROCESS,
            str(path),
            f"proc{n}",
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(5)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0] * 5
    assert sum(int(stdout.decode().strip()) for stdout, _ in outputs) == 1
