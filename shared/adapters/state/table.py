"""The production `StateStore`: Azure Table Storage through azure-data-tables' async client.

Three tables, one per concern, named `<prefix>records`, `<prefix>ledger` and `<prefix>audit`, created on first
use. Concurrency rides on the service's own ETags: create-only is `create_entity` (the service answers 409 if
the entity exists), replace-if-unchanged is `update_entity(..., etag=..., match_condition=IfNotModified)` (412
if anyone wrote it since). The claim is built from exactly those two atomic operations, so it needs no lock
service and is safe across any number of Function instances; docs/state.md explains the partition design and
why the claim is safe.

Keys: PartitionKey/RowKey may not contain / \\ # ? or control characters, so every user-supplied part is
percent-encoded (reversible, and plain ids and "sku:<guid>" scopes are left readable). The original values
are also kept as ordinary properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

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
    InvalidKeyError,
    JSONInput,
    LeaseLostError,
    Record,
    StateStore,
    StateUnavailableError,
)

TABLE_PREFIX_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,55}$")
RECORDS, LEDGER, AUDIT = "records", "ledger", "audit"

# Characters left as they are in keys; everything else (notably / \ # ? % | and control characters) is
# percent-encoded. ASCII letters, digits and _.-~ are always left alone by quote().
_KEY_SAFE = " !$&'()*+,:;=@[]^{}"
_MAX_KEY_CHARS = 512  # PartitionKey/RowKey are limited to 1 KiB (UTF-16)
_TS_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_TS_WIDTH = len("20250101T000000.000000Z")
_CLAIM_ROUNDS = 8
_PENDING = "Audit_"
"""Prefix of the ledger properties holding the audit entity a completion still has to append, one property per
audit property (each within Table Storage's 64 KiB), next to `AuditPending` = true."""


def encode_key(*parts: str) -> str:
    """One Table key from one or more parts, joined by "|" (which the encoding never leaves bare)."""
    key = "|".join(quote(part, safe=_KEY_SAFE) for part in parts)
    if len(key) > _MAX_KEY_CHARS:
        raise InvalidKeyError(f"key {key[:60]}... is {len(key)} characters once encoded; Table Storage allows 1 KiB")
    return key


def decode_key(key: str) -> list[str]:
    return [unquote(part) for part in key.split("|")]


def table_names(prefix: str) -> dict[str, str]:
    """The three table names for a prefix (Table names are alphanumeric, 3-63 characters, start with a letter)."""
    if not TABLE_PREFIX_PATTERN.match(prefix):
        raise ValueError(
            f"table prefix {prefix!r} must be a letter followed by up to 55 letters or digits "
            "(Table Storage names are alphanumeric)"
        )
    return {concern: f"{prefix}{concern}" for concern in (RECORDS, LEDGER, AUDIT)}


class _AppendOrder:
    """Strictly increasing nanosecond stamps: audit RowKey tie-breakers that keep this process's append order
    and roughly match wall time across processes."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


_append_order = _AppendOrder()


class TableStateStore(OutboxHook, StateStore):
    """State in Azure Table Storage (or Azurite).

    The ledger and the audit log are different tables (no transaction spans them), so `complete(claim,
    outcome, audit=entry)` is an outbox: the completion and the audit entity, its RowKey fixed, are one ledger
    write; then the entity is created in the audit table (409: it is there already) and cleared from the ledger
    entry. What a dead process left pending is flushed by a `claim` that reads that ledger entry, or by
    `flush_outbox` (a query on `AuditPending`, at most every `outbox_scan_seconds` per store).

    Give either `connection_string` (Azurite, key-based accounts; STATE_TABLE_CONNECTION) or `endpoint`
    (https://<account>.table.core.windows.net; STATE_TABLE_ENDPOINT) with an async `credential`. Without a
    credential, an azure-identity `DefaultAzureCredential` is made (the Function App's managed identity in
    Azure; `managed_identity_client_id` picks a user-assigned one) and closed with the store.
    """

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        endpoint: str | None = None,
        credential: AsyncTokenCredential | None = None,
        managed_identity_client_id: str | None = None,
        table_prefix: str = "guestwarden",
        clock: Clock = utc_now,
        outbox_scan_seconds: float = 60.0,
    ) -> None:
        if (connection_string is None) == (endpoint is None):
            raise ValueError("give exactly one of connection_string or endpoint")
        self.table_names = table_names(table_prefix)
        self._clock = clock
        self._owned_credential: AsyncTokenCredential | None = None
        if connection_string is not None:
            self._service = TableServiceClient.from_connection_string(connection_string)
        else:
            assert endpoint is not None
            if credential is None:
                from azure.identity.aio import DefaultAzureCredential

                credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
                self._owned_credential = credential
            self._service = TableServiceClient(endpoint, credential=credential)
        self._tables: dict[str, TableClient] | None = None
        self._tables_lock = asyncio.Lock()
        self._closed = False
        self._outbox_scan_seconds = outbox_scan_seconds
        self._outbox_scanned_at: float | None = None

    # --- plumbing -------------------------------------------------------------------------------------------

    async def _table(self, concern: str) -> TableClient:
        if self._closed:
            raise StateUnavailableError("the Table state store is closed")
        if self._tables is None:
            async with self._tables_lock:
                if self._tables is None:
                    with _translated("create tables"):
                        tables = {
                            concern: await self._service.create_table_if_not_exists(name)
                            for concern, name in self.table_names.items()
                        }
                    self._tables = tables
        return self._tables[concern]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._service.close()
        if self._owned_credential is not None:
            await self._owned_credential.close()

    async def drop_tables(self) -> None:
        """Delete this store's three tables (tests and teardown of throw-away environments only)."""
        for name in self.table_names.values():
            with _translated("delete table"):
                await self._service.delete_table(name)
        self._tables = None

    # --- records --------------------------------------------------------------------------------------------

    async def get(self, kind: str, key: str) -> Record | None:
        pk, rk = encode_key(check_name("kind", kind)), encode_key(check_name("key", key))
        table = await self._table(RECORDS)
        with _translated("read record"):
            try:
                entity = await table.get_entity(pk, rk)
            except ResourceNotFoundError:
                return None
        return Record(kind, key, decode_json(entity["Value"]), _etag_of(entity))

    async def put(self, kind: str, key: str, value: JSONInput, *, etag: str | None) -> str:
        pk, rk = encode_key(check_name("kind", kind)), encode_key(check_name("key", key))
        check_etag(etag)
        entity = {"PartitionKey": pk, "RowKey": rk, "Kind": kind, "Key": key}
        entity["Value"] = encode_json(f"value of {kind}/{key}", value)
        table = await self._table(RECORDS)
        with _translated("write record"):
            try:
                if etag is None:
                    result = await table.create_entity(entity)
                elif etag == ANY_ETAG:
                    result = await table.upsert_entity(entity, mode=UpdateMode.REPLACE)
                else:
                    result = await table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except ResourceExistsError as error:
                raise ConflictError(f"record {kind}/{key} already exists") from error
            except (ResourceModifiedError, ResourceNotFoundError) as error:
                raise ConflictError(f"record {kind}/{key} was changed by someone else or is gone") from error
        return _etag_from_result(result)

    async def delete(self, kind: str, key: str, *, etag: str = ANY_ETAG) -> None:
        pk, rk = encode_key(check_name("kind", kind)), encode_key(check_name("key", key))
        check_etag(etag)
        table = await self._table(RECORDS)
        with _translated("delete record"):
            try:
                if etag == ANY_ETAG:
                    await table.delete_entity(pk, rk)
                else:
                    # A missing entity is a 404, which the client swallows: deleting what is gone is a no-op.
                    await table.delete_entity(pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError as error:
                raise ConflictError(f"record {kind}/{key} was changed by someone else (etag mismatch)") from error

    async def list_records(self, kind: str) -> AsyncIterator[Record]:
        pk = encode_key(check_name("kind", kind))
        table = await self._table(RECORDS)
        with _translated("list records"):
            async for entity in table.query_entities("PartitionKey eq @pk", parameters={"pk": pk}):
                yield Record(kind, str(entity["Key"]), decode_json(entity["Value"]), _etag_of(entity))

    # --- ledger ---------------------------------------------------------------------------------------------

    async def claim(self, action: str, subject: str, scope: str, *, owner: str, lease_seconds: int) -> Claim:
        check_name("action", action)
        check_name("subject", subject)
        check_name("scope", scope)
        check_name("owner", owner)
        lease = timedelta(seconds=check_lease(lease_seconds))
        pk, rk = encode_key(subject), encode_key(action, scope)
        table = await self._table(LEDGER)
        with _translated("claim"):
            for _ in range(_CLAIM_ROUNDS):
                now = as_utc("clock()", self._clock())
                won = Claim(ClaimStatus.WON, action, subject, scope, owner, owner, now + lease, 1)
                # 1. The common case: nobody has ever claimed it. Insert is atomic: one creator wins.
                try:
                    result = await table.create_entity(self._ledger_entity(pk, rk, won, LEDGER_HELD))
                    return replace(won, token=_etag_from_result(result))
                except ResourceExistsError:
                    pass
                # 2. It exists: read it with its etag and decide.
                try:
                    entity = await table.get_entity(pk, rk)
                except ResourceNotFoundError:
                    continue  # (entries are never deleted by the API; only by hand) start over
                expires = entity.get("LeaseExpiresAt")
                attempt = int(entity.get("Attempt", 1))
                holder = str(entity.get("Holder", ""))
                verdict = ledger_verdict(str(entity["Status"]), _aware(expires), now)
                if verdict == "done":
                    if entity.get("AuditPending"):  # its process died before appending the audit entry
                        await self._flush_entity(table, entity)
                    outcome = entity.get("Outcome")
                    return replace(
                        won,
                        status=ClaimStatus.DONE,
                        holder=holder,
                        lease_expires_at=None,
                        attempt=attempt,
                        outcome=decode_json(outcome) if outcome else {},
                    )
                if verdict == "held":
                    return replace(
                        won, status=ClaimStatus.HELD, holder=holder, lease_expires_at=_aware(expires), attempt=attempt
                    )
                # 3. Released or expired: take it over only if nobody changed it since we read it.
                won = replace(won, attempt=attempt + 1)
                try:
                    result = await table.update_entity(
                        self._ledger_entity(pk, rk, won, LEDGER_HELD),
                        mode=UpdateMode.REPLACE,
                        etag=_etag_of(entity),
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return replace(won, token=_etag_from_result(result))
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue  # someone else moved first: read again
        # Every round lost a race; someone else is busy with it. Report it held, i.e. "retry later".
        return Claim(ClaimStatus.HELD, action, subject, scope, owner, None, None, 0)

    @staticmethod
    def _ledger_entity(
        pk: str, rk: str, claim: Claim, status: str, outcome: str | None = None, holder: str | None = None
    ) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": pk,
            "RowKey": rk,
            "Action": claim.action,
            "Subject": claim.subject,
            "Scope": claim.scope,
            "Status": status,
            "Holder": holder or claim.owner,
            "Attempt": claim.attempt,
        }
        if status == LEDGER_HELD and claim.lease_expires_at is not None:
            entity["LeaseExpiresAt"] = claim.lease_expires_at
        if outcome is not None:
            entity["Outcome"] = outcome
        return entity

    async def _finish(self, claim: Claim, status: str, outcome: str | None) -> bool:
        """Replace our held entry if (and only if) nobody wrote it since we won: the etag is the lease token."""
        pk, rk = encode_key(claim.subject), encode_key(claim.action, claim.scope)
        table = await self._table(LEDGER)
        with _translated(status):
            try:
                await table.update_entity(
                    self._ledger_entity(pk, rk, claim, status, outcome),
                    mode=UpdateMode.REPLACE,
                    etag=claim.token,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return False
        return True

    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        check_won(claim, "complete")
        text = encode_json("outcome", outcome)
        pending = _audit_entity(audit) if audit is not None else None
        pk, rk = encode_key(claim.subject), encode_key(claim.action, claim.scope)
        entity = self._ledger_entity(pk, rk, claim, LEDGER_DONE, text)
        if pending is not None:
            entity |= {f"{_PENDING}{name}": value for name, value in pending.items()} | {"AuditPending": True}
        table = await self._table(LEDGER)
        with _translated(LEDGER_DONE):
            try:
                result = await table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=claim.token, match_condition=MatchConditions.IfNotModified
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                raise LeaseLostError(
                    f"claim {claim.action}/{claim.subject}/{claim.scope} is no longer held by {claim.owner}"
                ) from None
        self._after_ledger_write()
        if pending is not None:
            await self._flush(table, entity, _etag_from_result(result), pending)
        return replace(claim, status=ClaimStatus.DONE, lease_expires_at=None, outcome=decode_json(text), token="")

    async def flush_outbox(self) -> int:
        now = time.monotonic()
        if self._outbox_scanned_at is not None and now - self._outbox_scanned_at < self._outbox_scan_seconds:
            return 0
        self._outbox_scanned_at = now
        table = await self._table(LEDGER)
        flushed = 0
        with _translated("scan the outbox"):
            found = [entity async for entity in table.query_entities("AuditPending eq true")]
        for entity in found:
            await self._flush_entity(table, entity)
            flushed += 1
        return flushed

    async def _flush_entity(self, table: TableClient, entity: Any) -> None:
        pending = {name.removeprefix(_PENDING): value for name, value in entity.items() if name.startswith(_PENDING)}
        await self._flush(table, dict(entity.items()), _etag_of(entity), pending)

    async def _flush(self, ledger: TableClient, entity: dict[str, Any], etag: str, pending: dict[str, Any]) -> None:
        """Append the pending audit entity (its RowKey is fixed: a second append is a 409, not a second entry),
        then clear it from the ledger entry if nobody wrote that since (else someone else has cleared it)."""
        audit = await self._table(AUDIT)
        with _translated("append audit entry"), contextlib.suppress(ResourceExistsError):
            await audit.create_entity(pending)
        cleared = {k: v for k, v in entity.items() if not k.startswith(_PENDING) and k != "AuditPending"}
        with _translated("clear the outbox"), contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            await ledger.update_entity(
                cleared, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )

    async def release(self, claim: Claim) -> bool:
        check_won(claim, "release")
        return await self._finish(claim, LEDGER_RELEASED, None)

    # --- audit ----------------------------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> None:
        entity = _audit_entity(entry)
        table = await self._table(AUDIT)
        with _translated("append audit entry"):
            await table.create_entity(entity)

    async def query(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        subject: str | None = None,
        action: str | None = None,
    ) -> AsyncIterator[AuditEntry]:
        start = as_utc("since", since)
        # Partitions are days and RowKeys start with the full timestamp, so one range on each key selects the
        # window; the service returns partitions and rows in key order, which is time order.
        clauses = ["PartitionKey ge @pk_from", "RowKey ge @rk_from"]
        parameters: dict[str, Any] = {"pk_from": f"{start:%Y%m%d}", "rk_from": start.strftime(_TS_FORMAT)}
        if until is not None:
            end = as_utc("until", until)
            clauses += ["PartitionKey le @pk_to", "RowKey lt @rk_to"]
            parameters |= {"pk_to": f"{end:%Y%m%d}", "rk_to": end.strftime(_TS_FORMAT)}
        if subject is not None:
            clauses.append("Subject eq @subject")
            parameters["subject"] = subject
        if action is not None:
            clauses.append("Action eq @action")
            parameters["action"] = action
        table = await self._table(AUDIT)
        with _translated("query audit log"):
            async for entity in table.query_entities(" and ".join(clauses), parameters=parameters):
                yield AuditEntry(
                    at=datetime.strptime(str(entity["RowKey"])[:_TS_WIDTH], _TS_FORMAT).replace(tzinfo=UTC),
                    actor=str(entity["Actor"]),
                    action=str(entity["Action"]),
                    subject=str(entity["Subject"]),
                    reason=str(entity.get("Reason", "")),
                    dry_run=bool(entity["DryRun"]),
                    outcome=str(entity.get("Outcome", "")),
                    evidence=decode_json(entity["Evidence"]),
                    correlation_id=str(entity.get("CorrelationId", "")),
                    id=str(entity.get("EntryId", "")),
                )


def _audit_entity(entry: AuditEntry) -> dict[str, Any]:
    """The audit table entity of an entry, its RowKey fixed now (time, this process's append order, the id)."""
    at, evidence = check_audit_entry(entry)
    return {
        "PartitionKey": f"{at:%Y%m%d}",
        "RowKey": f"{at.strftime(_TS_FORMAT)}-{_append_order.next():020d}-{entry.id}",
        "At": at,
        "Actor": entry.actor,
        "Action": entry.action,
        "Subject": entry.subject,
        "Reason": entry.reason,
        "DryRun": entry.dry_run,
        "Outcome": entry.outcome,
        "Evidence": evidence,
        "CorrelationId": entry.correlation_id,
        "EntryId": entry.id,
    }


@contextlib.contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Turn the SDK's transport, auth and service errors into `StateUnavailableError` (ours pass through)."""
    try:
        yield
    except ClientAuthenticationError as error:
        raise StateUnavailableError(f"Table Storage refused our credentials during {operation}: {error}") from error
    except AzureError as error:
        raise StateUnavailableError(f"Table Storage failed during {operation}: {error}") from error


def _etag_of(entity: Any) -> str:
    return str(entity.metadata["etag"])


def _etag_from_result(result: Mapping[str, Any]) -> str:
    etag = result.get("etag")
    if not etag:  # pragma: no cover - the service always answers with an ETag
        raise StateUnavailableError("Table Storage answered a write without an ETag")
    return str(etag)


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
