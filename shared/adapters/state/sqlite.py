"""The embedded `StateStore`: one SQLite file, the default for the demo and local runs.

Why it is safe with several processes on one file: the file is in WAL mode (readers never block the writer),
every connection waits up to `busy_timeout_seconds` for the write lock instead of failing, and a claim's
read-decide-write runs inside one `BEGIN IMMEDIATE` transaction, which takes the database's single write lock
before reading, so two claimers (threads, adapter instances or processes) are strictly serialised and at most
one can see the entry free and take it.

Why a worker thread: sqlite3 blocks. Each store owns one connection used only by its own single worker
thread, so the event loop never blocks and the connection is never shared across threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

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
    StateUnavailableError,
)

_T = TypeVar("_T")
_PAGE = 500
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    etag TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ledger (
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    scope TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('held', 'done', 'released')),
    holder TEXT NOT NULL,
    token TEXT NOT NULL,
    lease_expires_at TEXT,
    attempt INTEGER NOT NULL,
    outcome TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (action, subject, scope)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    evidence TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    entry_id TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at, seq);
CREATE INDEX IF NOT EXISTS audit_by_subject ON audit (subject, at, seq);

-- The audit log is append-only: the database itself refuses edits, not just the API.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


# After the migration (a file from schema version 1 has no entry_id column yet): one row per entry id, so
# appending the same entry again stores nothing. Rows from before have none (NULLs never collide).
_AUDIT_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS audit_by_id ON audit (entry_id)"

_AUDIT_INSERT = (
    "INSERT OR IGNORE INTO audit (at, actor, action, subject, reason, dry_run, outcome, evidence, correlation_id, "
    "entry_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _audit_row(entry: AuditEntry) -> tuple[Any, ...]:
    at, evidence = check_audit_entry(entry)
    return (
        _ts(at),
        entry.actor,
        entry.action,
        entry.subject,
        entry.reason,
        int(entry.dry_run),
        entry.outcome,
        evidence,
        entry.correlation_id,
        entry.id,
    )


def _ts(moment: datetime) -> str:
    """Fixed-width UTC text, so string order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class SqliteStateStore(OutboxHook, StateStore):
    """State in one SQLite file (parent folders created), or ":memory:" (private to this instance).

    `complete(claim, outcome, audit=entry)` writes the completion and the audit entry in one transaction, so
    there is never an outbox to flush."""

    def __init__(self, path: str | Path, *, clock: Clock = utc_now, busy_timeout_seconds: float = 30.0) -> None:
        self._path = str(path)
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guestwarden-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    # --- plumbing -------------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened (and the schema created) on first use; only ever called on the worker."""
        if self._conn is None:
            if self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                if self._path != ":memory:":
                    self._enable_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _split_statements(_SCHEMA):
                    conn.execute(statement)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
                if "entry_id" not in columns:  # a file from schema version 1
                    conn.execute("ALTER TABLE audit ADD COLUMN entry_id TEXT")
                conn.execute(_AUDIT_ID_INDEX)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a file to WAL. Changing the journal mode needs the file to itself, and SQLite answers "database
        is locked" at once (busy_timeout does not cover it) while another connection opens the same new file:
        several stores starting together on one file (a host's workers, the CI's contract test of 50 claimers)
        retry for up to busy_timeout."""
        for attempt in Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e)),
            stop=stop_after_delay(self._busy_timeout),
            wait=wait_exponential(multiplier=0.01, max=0.5),
            reraise=True,
        ):
            with attempt:
                conn.execute("PRAGMA journal_mode = WAL")

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StateUnavailableError("the SQLite state store is closed")

        def call() -> _T:
            return work(self._connection())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as error:
            raise StateUnavailableError(f"SQLite state store {self._path}: {error}") from error

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # --- records --------------------------------------------------------------------------------------------

    async def get(self, kind: str, key: str) -> Record | None:
        check_name("kind", kind)
        check_name("key", key)

        def work(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row = conn.execute("SELECT value, etag FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            return None if row is None else (row[0], row[1])

        found = await self._run(work)
        return None if found is None else Record(kind, key, decode_json(found[0]), found[1])

    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        check_name("kind", kind)
        check_name("key", key)
        check_etag(etag)
        text = encode_json(f"value of {kind}/{key}", value)
        new_etag = uuid.uuid4().hex
        now = _ts(as_utc("clock()", self._clock()))

        def work(conn: sqlite3.Connection) -> None:
            if etag is None:
                try:
                    conn.execute(
                        "INSERT INTO records (kind, key, value, etag, updated_at) VALUES (?, ?, ?, ?, ?)",
                        (kind, key, text, new_etag, now),
                    )
                except sqlite3.IntegrityError as error:
                    raise ConflictError(f"record {kind}/{key} already exists") from error
            elif etag == ANY_ETAG:
                conn.execute(
                    "INSERT INTO records (kind, key, value, etag, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, etag = excluded.etag, "
                    "updated_at = excluded.updated_at",
                    (kind, key, text, new_etag, now),
                )
            else:
                cursor = conn.execute(
                    "UPDATE records SET value = ?, etag = ?, updated_at = ? WHERE kind = ? AND key = ? AND etag = ?",
                    (text, new_etag, now, kind, key, etag),
                )
                if cursor.rowcount != 1:
                    raise ConflictError(f"record {kind}/{key} was changed by someone else or is gone")

        await self._run(work)
        return new_etag

    async def delete(self, kind: str, key: str, *, etag: str = ANY_ETAG) -> None:
        check_name("kind", kind)
        check_name("key", key)
        check_etag(etag)

        def work(conn: sqlite3.Connection) -> None:
            if etag == ANY_ETAG:
                conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))
                return
            with _immediate(conn):
                row = conn.execute("SELECT etag FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
                if row is None:
                    return
                if row[0] != etag:
                    raise ConflictError(f"record {kind}/{key} was changed by someone else (etag mismatch)")
                conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

        await self._run(work)

    async def list_records(self, kind: str) -> AsyncIterator[Record]:
        check_name("kind", kind)
        after: str | None = None
        while True:
            start = after

            def work(conn: sqlite3.Connection, start: str | None = start) -> list[tuple[str, str, str]]:
                if start is None:
                    sql = "SELECT key, value, etag FROM records WHERE kind = ? ORDER BY key LIMIT ?"
                    return conn.execute(sql, (kind, _PAGE)).fetchall()
                sql = "SELECT key, value, etag FROM records WHERE kind = ? AND key > ? ORDER BY key LIMIT ?"
                return conn.execute(sql, (kind, start, _PAGE)).fetchall()

            rows = await self._run(work)
            for key, value, etag in rows:
                yield Record(kind, key, decode_json(value), etag)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    # --- ledger ---------------------------------------------------------------------------------------------

    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Claim:
        ident = (check_name("action", action), check_name("subject", subject), check_name("scope", scope))
        check_name("owner", owner)
        lease = timedelta(seconds=check_lease(lease_seconds))
        clock = self._clock

        def work(conn: sqlite3.Connection) -> Claim:
            with _immediate(conn):
                # The clock is read under the write lock, so "expired" is judged at the moment we decide.
                now = as_utc("clock()", clock())
                row = conn.execute(
                    "SELECT status, holder, lease_expires_at, attempt, outcome FROM ledger "
                    "WHERE action = ? AND subject = ? AND scope = ?",
                    ident,
                ).fetchone()
                base = Claim(ClaimStatus.WON, action, subject, scope, owner, owner, now + lease, 1)
                if row is not None:
                    status, holder, expires_text, attempt, outcome = row
                    expires = _parse_ts(expires_text) if expires_text else None
                    verdict = ledger_verdict(status, expires, now)
                    if verdict == "done":
                        return replace(
                            base,
                            status=ClaimStatus.DONE,
                            holder=holder,
                            lease_expires_at=None,
                            attempt=attempt,
                            outcome=decode_json(outcome) if outcome else {},
                        )
                    if verdict == "held":
                        return replace(
                            base, status=ClaimStatus.HELD, holder=holder, lease_expires_at=expires, attempt=attempt
                        )
                    base = replace(base, attempt=attempt + 1)
                token = uuid.uuid4().hex
                assert base.lease_expires_at is not None
                conn.execute(
                    "INSERT INTO ledger (action, subject, scope, status, holder, token, lease_expires_at, "
                    "attempt, outcome, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?) "
                    "ON CONFLICT (action, subject, scope) DO UPDATE SET status = excluded.status, "
                    "holder = excluded.holder, token = excluded.token, "
                    "lease_expires_at = excluded.lease_expires_at, attempt = excluded.attempt, "
                    "outcome = NULL, updated_at = excluded.updated_at",
                    (*ident, LEDGER_HELD, owner, token, _ts(base.lease_expires_at), base.attempt, _ts(now)),
                )
                return replace(base, token=token)

        return await self._run(work)

    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        check_won(claim, "complete")
        text = encode_json("outcome", outcome)
        row = _audit_row(audit) if audit is not None else None
        now = _ts(as_utc("clock()", self._clock()))

        def work(conn: sqlite3.Connection) -> int:
            with _immediate(conn):  # the completion and its audit entry: both or neither
                cursor = conn.execute(
                    "UPDATE ledger SET status = ?, outcome = ?, lease_expires_at = NULL, updated_at = ? "
                    "WHERE action = ? AND subject = ? AND scope = ? AND status = ? AND token = ?",
                    (LEDGER_DONE, text, now, claim.action, claim.subject, claim.scope, LEDGER_HELD, claim.token),
                )
                if cursor.rowcount == 1 and row is not None:
                    conn.execute(_AUDIT_INSERT, row)
                return cursor.rowcount

        if await self._run(work) != 1:
            raise LeaseLostError(
                f"claim {claim.action}/{claim.subject}/{claim.scope} is no longer held by {claim.owner}"
            )
        self._after_ledger_write()
        return replace(claim, status=ClaimStatus.DONE, lease_expires_at=None, outcome=decode_json(text), token="")

    async def release(self, claim: Claim) -> bool:
        check_won(claim, "release")
        now = _ts(as_utc("clock()", self._clock()))

        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE ledger SET status = ?, lease_expires_at = NULL, updated_at = ? "
                "WHERE action = ? AND subject = ? AND scope = ? AND status = ? AND token = ?",
                (LEDGER_RELEASED, now, claim.action, claim.subject, claim.scope, LEDGER_HELD, claim.token),
            )
            return cursor.rowcount

        return await self._run(work) == 1

    # --- audit ----------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> None:
        row = _audit_row(entry)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(_AUDIT_INSERT, row)  # an entry already stored (same id) is not stored again

        await self._run(work)

    async def query(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        subject: str | None = None,
        action: str | None = None,
    ) -> AsyncIterator[AuditEntry]:
        where = ["at >= ?"]
        params: list[Any] = [_ts(as_utc("since", since))]
        if until is not None:
            where.append("at < ?")
            params.append(_ts(as_utc("until", until)))
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        columns = "seq, at, actor, action, subject, reason, dry_run, outcome, evidence, correlation_id, entry_id"
        cursor_at: tuple[str, int] | None = None
        while True:
            page_where = list(where)
            page_params = list(params)
            if cursor_at is not None:
                page_where.append("(at > ? OR (at = ? AND seq > ?))")
                page_params.extend([cursor_at[0], cursor_at[0], cursor_at[1]])
            sql = f"SELECT {columns} FROM audit WHERE {' AND '.join(page_where)} ORDER BY at, seq LIMIT {_PAGE}"  # noqa: S608 - fixed clauses, values are bound

            def work(conn: sqlite3.Connection, sql: str = sql, bound: list[Any] = page_params) -> list[Any]:
                return conn.execute(sql, bound).fetchall()

            rows = await self._run(work)
            for seq, at, actor, act, subj, reason, dry_run, outcome, evidence, correlation_id, entry_id in rows:
                cursor_at = (at, seq)
                yield AuditEntry(
                    at=_parse_ts(at),
                    actor=actor,
                    action=act,
                    subject=subj,
                    reason=reason,
                    dry_run=bool(dry_run),
                    outcome=outcome,
                    evidence=decode_json(evidence),
                    correlation_id=correlation_id,
                    id=entry_id or "",
                )
            if len(rows) < _PAGE:
                return


class _immediate:
    """`with _immediate(conn):` runs the block in a BEGIN IMMEDIATE transaction (write lock taken up front),
    committing on success and rolling back on any exception."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, traceback: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


def _split_statements(script: str) -> list[str]:
    """Split the schema into statements (executescript would commit our transaction); triggers end in END;."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not line.strip() or line.strip().startswith("--"):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    return statements
