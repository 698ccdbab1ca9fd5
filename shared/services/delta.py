"""Use case: the users/delta backstop. Catches every change a notification missed.

Graph's notifications are at-least-once in theory and "latency unknown" for users in practice; a subscription
can lapse. A timer walks users/delta from the deltaLink kept in state and enqueues every changed, accepted
guest exactly like a notification would; the license processor decides (and its ledger makes repeats no-ops).
An expired deltaLink (syncStateNotFound, after 7 days) triggers a full resync.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.domain.directory import DeltaPage, DirectoryUser
from shared.domain.messages import UserChanged
from shared.ports.graph import DeltaGraph, GraphError
from shared.ports.publisher import MessagePublisher, OutgoingMessage
from shared.ports.state import Record, StateStore, exclusively

log = logging.getLogger(__name__)

RECORD_KIND = "delta"
RECORD_KEY = "users"
LEASE_SECONDS = 900


@dataclass(frozen=True, slots=True)
class DeltaDeps:
    graph: DeltaGraph
    state: StateStore
    publisher: MessagePublisher
    queue: str
    first_run: Literal["latest", "full"]
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"delta-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class DeltaOutcome:
    status: str
    """started-from-now | synced | resynced | busy"""
    pages: int = 0
    changed: int = 0
    enqueued: int = 0


def worth_enqueuing(user: DirectoryUser) -> bool:
    """Only guests who accepted can need a licence; everything else would be a no-op message."""
    return user.is_guest and user.has_joined


async def run_delta_backstop(deps: DeltaDeps) -> DeltaOutcome:
    async with exclusively(
        deps.state, "delta-backstop", RECORD_KEY, owner=deps.owner, lease_seconds=LEASE_SECONDS
    ) as mine:
        if not mine:
            return DeltaOutcome("busy")
        return await _run(deps)


async def _run(deps: DeltaDeps) -> DeltaOutcome:
    record = await deps.state.get(RECORD_KIND, RECORD_KEY)
    link = record.value.get("deltaLink") if record is not None else None
    if not isinstance(link, str):
        if deps.first_run == "latest":
            page = await deps.graph.users_delta(start_from_now=True)
            await _save_link(deps, record, page)
            return DeltaOutcome("started-from-now", pages=1)
        return await _walk(deps, record, None, "synced")
    try:
        return await _walk(deps, record, link, "synced")
    except GraphError as exc:
        if not needs_full_resync(exc):
            raise
        restart = exc.location or None
        log.warning(
            "users/delta: the saved link is no longer served (%s %s): full resync%s",
            exc.status,
            exc.code,
            " from the Location Graph gave" if restart else "",
        )
        record = await deps.state.get(RECORD_KIND, RECORD_KEY)
        return await _walk(deps, record, restart, "resynced")


def needs_full_resync(exc: GraphError) -> bool:
    """A saved delta link Graph will never serve again: start over (delta-query-overview.md).

    An expired token is 400 `syncStateNotFound` (links of identity resources last 7 days); a synchronization
    reset is 410 Gone, with a Location to restart from. Any other 400, 404 or 410 on a link Graph itself gave us
    is the same family (retrying it can only fail again), so it resyncs too instead of failing every run; 401,
    403, 429 and 5xx are not about the link and are raised. A failure of the resync itself is raised."""
    return exc.status in (400, 404, 410)


async def _walk(deps: DeltaDeps, record: Record | None, link: str | None, status: str) -> DeltaOutcome:
    """Follow nextLinks to the deltaLink, enqueueing page by page (constant memory), then save the link."""
    run = hashlib.sha256((link or f"full:{deps.clock().isoformat()}").encode()).hexdigest()[:16]
    pages = changed = enqueued = 0
    page = await deps.graph.users_delta(link)
    while True:
        pages += 1
        changed += len(page.changed)
        messages: list[OutgoingMessage] = [
            OutgoingMessage.of(UserChanged(user.id, "delta"), message_id=f"d:{run}:{user.id}")
            for user in page.changed
            if worth_enqueuing(user)
        ]
        if messages:
            await deps.publisher.publish_many(deps.queue, messages)
            enqueued += len(messages)
        if page.delta_link or not page.next_link:
            break
        page = await deps.graph.users_delta(page.next_link)
    current = await deps.state.get(RECORD_KIND, RECORD_KEY)
    await _save_link(deps, current, page)
    log.info("users/delta %s: %d page(s), %d change(s), %d enqueued", status, pages, changed, enqueued)
    return DeltaOutcome(status, pages, changed, enqueued)


async def _save_link(deps: DeltaDeps, record: Record | None, page: DeltaPage) -> None:
    if not page.delta_link:
        raise GraphError(None, "noDeltaLink", "users/delta ended without a deltaLink", operation="users delta")
    etag = record.etag if record is not None else None
    await deps.state.put(
        RECORD_KIND,
        RECORD_KEY,
        {"deltaLink": page.delta_link, "savedAt": deps.clock().isoformat()},
        etag=etag,
    )
