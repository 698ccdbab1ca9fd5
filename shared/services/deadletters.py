"""Use case: the dead letters of guestwarden's queues, for operators (the dashboard and its timer).

The overview must never talk to Service Bus on a page load, so their counts are kept in one state record
(kind "dashboard", key "dead-letters"), refreshed by the `dead_letter_check` timer (DEADLETTER_CHECK_SCHEDULE)
and after every resubmit (the dead-letters page peeks and counts live, and saves nothing: a GET changes nothing):

    {"asOf": ISO time, "queues": {name: {"count", "capped", "oldest", "reasons": {reason: n}}}}

A queue that could not be read keeps its last counts and gets an `"error"`. Bodies are never logged nor kept in
the record (they are attacker-influenced and may name guests); the dead-letters page shows them, escaped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.deadletters import PEEK_CAP, RESUBMIT_CAP, DeadLetter, shown_count, summarise
from shared.ports.deadletters import DeadLetterQueues
from shared.ports.publisher import QueueError
from shared.ports.state import ANY_ETAG, StateStore

log = logging.getLogger(__name__)

RECORD_KIND, RECORD_KEY = "dashboard", "dead-letters"


@dataclass(frozen=True, slots=True)
class DeadLetterDeps:
    """The dead-letter timer's and the dashboard's wiring (shared.bootstrap)."""

    queues_port: DeadLetterQueues
    state: StateStore
    clock: Callable[[], datetime]
    queues: tuple[str, ...]
    """The queues guestwarden owns: the only ones an operator may look at or resubmit."""


async def count_dead_letters(
    queues_port: DeadLetterQueues,
    state: StateStore,
    clock: Callable[[], datetime],
    queues: Sequence[str],
    peeked: dict[str, list[DeadLetter]] | None = None,
) -> dict[str, Any]:
    """Count each queue's dead letters (peeked, at most PEEK_CAP; `peeked`: letters already read, by queue); the
    record, not saved. A queue that cannot be read keeps its previous counts, marked with the error."""
    previous = await load_dead_letters(state)
    before: dict[str, Any] = previous["queues"] if previous else {}
    summary: dict[str, Any] = {}
    for queue in queues:
        letters = peeked.get(queue) if peeked else None
        try:
            if letters is None:
                letters = await queues_port.peek(queue, PEEK_CAP + 1)
        except QueueError as exc:
            log.warning("dead letters of %s not readable: %s", queue, exc.reason)
            old = before.get(queue) or {"count": 0, "capped": False, "oldest": None, "reasons": {}}
            summary[queue] = {**old, "error": exc.reason[:300]}
            continue
        summary[queue] = summarise(letters, PEEK_CAP)
    return {"asOf": clock().isoformat(), "queues": summary}


async def refresh_dead_letters(
    queues_port: DeadLetterQueues,
    state: StateStore,
    clock: Callable[[], datetime],
    queues: Sequence[str],
) -> dict[str, Any]:
    """`count_dead_letters`, saved as the record the overview reads; returns it."""
    record = await count_dead_letters(queues_port, state, clock, queues)
    await state.put(RECORD_KIND, RECORD_KEY, record, etag=ANY_ETAG)
    return record


def warn_dead_letters(record: dict[str, Any]) -> int:
    """One WARNING per queue with dead letters, naming the queue, the count and the reasons (never a body);
    returns the total."""
    total = 0
    for queue, line in record.get("queues", {}).items():
        count = int(line.get("count") or 0)
        total += count
        if count:
            reasons = ", ".join(f"{n} {reason}" for reason, n in (line.get("reasons") or {}).items())
            log.warning(
                "queue %s has %s dead letter(s) (%s): see the dashboard's dead-letters page or "
                "`guestwarden deadletters list --queue %s`",
                queue,
                shown_count(count, bool(line.get("capped"))),
                reasons,
                queue,
            )
    return total


async def check_dead_letters(deps: DeadLetterDeps) -> dict[str, Any]:
    """The timer's job: refresh the record and warn about every queue with dead letters."""
    record = await refresh_dead_letters(deps.queues_port, deps.state, deps.clock, deps.queues)
    if not warn_dead_letters(record):
        log.info("no dead letters in %s", ", ".join(deps.queues))
    return record


async def load_dead_letters(state: StateStore) -> dict[str, Any] | None:
    """The record as the last refresh left it, with each queue's shown count and the total (None: never
    refreshed). One point read: the overview's cost."""
    found = await state.get(RECORD_KIND, RECORD_KEY)
    return shown_counts(found.value if found is not None else {})


def shown_counts(value: dict[str, Any]) -> dict[str, Any] | None:
    """A dead-letter record as the pages show it: each queue's shown count ("1000+" when capped) and the total."""
    lines = value.get("queues")
    if not isinstance(lines, dict):
        return None
    queues: dict[str, Any] = {}
    for name, line in lines.items():
        if isinstance(line, dict):
            count, capped = _count(line.get("count")), bool(line.get("capped"))
            queues[str(name)] = {**line, "count": count, "capped": capped, "shown": shown_count(count, capped)}
    as_of = value.get("asOf")
    try:
        when = datetime.fromisoformat(str(as_of)) if as_of else None
    except ValueError:
        when = None
    total = sum(q["count"] for q in queues.values())
    capped = any(q["capped"] for q in queues.values())
    return {"as_of": when, "queues": queues, "total": total, "shown": shown_count(total, capped)}


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


async def list_dead_letters(deps: DeadLetterDeps, per_queue: int = 100) -> dict[str, Any]:
    """The dead-letters page: each queue's dead letters peeked live (the first `per_queue` shown) and counted.
    Nothing is saved: a GET changes nothing, not even the overview's count (the timer and a resubmit do that)."""
    peeked: dict[str, list[DeadLetter]] = {}
    errors: dict[str, str] = {}
    for queue in deps.queues:
        try:
            peeked[queue] = await deps.queues_port.peek(queue, PEEK_CAP + 1)
        except QueueError as exc:
            errors[queue] = exc.reason[:300]
    record = shown_counts(await count_dead_letters(deps.queues_port, deps.state, deps.clock, deps.queues, peeked))
    lines = record["queues"] if record else {}
    return {
        "queues": [
            {
                "name": queue,
                "letters": peeked.get(queue, [])[:per_queue],
                "line": lines.get(queue),
                "error": errors.get(queue),
            }
            for queue in deps.queues
        ],
        "dead_letters": record,
    }


class UnknownQueue(ValueError):
    """Not one of guestwarden's queues: never resubmitted."""


async def resubmit_dead_letters(deps: DeadLetterDeps, queue: str) -> list[DeadLetter]:
    """Send `queue`'s dead letters back (at most RESUBMIT_CAP), then refresh the record. Only a configured queue:
    UnknownQueue otherwise. QueueError when Service Bus refuses (nothing is lost: a dead letter is removed only
    after its copy was sent)."""
    if queue not in deps.queues:
        raise UnknownQueue(queue)
    sent = await deps.queues_port.resubmit(queue, None, RESUBMIT_CAP)
    await refresh_dead_letters(deps.queues_port, deps.state, deps.clock, deps.queues)
    return sent
