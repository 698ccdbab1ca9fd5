"""Indexes that keep /users paging cheap on a 100,000-user tenant.

A createdDateTime range (`createdDateTime ge X and createdDateTime le Y`, what the partitioned stale scan
asks for) would otherwise make every partition's pages walk every user. Here the users are sorted once per
store version by createdDateTime; a range filter then starts from the users inside the range only. The full
filter is still applied to every candidate, so an index can only narrow the walk, never change an answer.
"""

from __future__ import annotations

import bisect
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from local.graph_sim.clock import parse_dt
from local.graph_sim.odata import BoolOp, Comparison, Filter
from local.graph_sim.store import TenantStore

CREATED = "createddatetime"


@dataclass
class _Index:
    version: int
    stamps: list[datetime]
    ids: list[str]
    candidates: dict[str, list[str]]
    """Per filter text: the candidate ids in id order (cached for the store version)."""


_INDEXES: weakref.WeakKeyDictionary[TenantStore, _Index] = weakref.WeakKeyDictionary()


def _index(store: TenantStore) -> _Index:
    found = _INDEXES.get(store)
    if found is not None and found.version == store.version:
        return found
    pairs: list[tuple[datetime, str]] = []
    for user_id, user in store.users.items():
        stamp = user.get("createdDateTime")
        if isinstance(stamp, str):
            try:
                pairs.append((parse_dt(stamp), user_id))
            except ValueError:
                continue
    pairs.sort()
    index = _Index(store.version, [p[0] for p in pairs], [p[1] for p in pairs], {})
    _INDEXES[store] = index
    return index


def _created_bounds(flt: Filter) -> tuple[datetime | None, datetime | None] | None:
    """(lowest, highest) createdDateTime the filter allows, if it is an `and` with such range clauses."""
    clauses: list[Any] = flt.root.operands if isinstance(flt.root, BoolOp) and flt.root.op == "and" else [flt.root]
    low: datetime | None = None
    high: datetime | None = None
    ranged = False
    for clause in clauses:
        if not (isinstance(clause, Comparison) and clause.path.lower() == CREATED and clause.literal.is_datetime):
            continue
        moment = clause.literal.value
        if clause.op in ("ge", "gt"):
            low, ranged = (moment if low is None else max(low, moment)), True
        elif clause.op in ("le", "lt"):
            high, ranged = (moment if high is None else min(high, moment)), True
    return (low, high) if ranged else None


def candidate_ids(store: TenantStore, flt: Filter | None) -> list[str] | None:
    """The ids (in id order) that can match a createdDateTime-range filter, or None: walk every user."""
    if flt is None:
        return None
    bounds = _created_bounds(flt)
    if bounds is None:
        return None
    index = _index(store)
    cached = index.candidates.get(flt.text)
    if cached is not None:
        return cached
    low, high = bounds
    start = 0 if low is None else bisect.bisect_left(index.stamps, low)
    end = len(index.stamps) if high is None else bisect.bisect_right(index.stamps, high)
    ids = sorted(index.ids[start:end])
    if len(index.candidates) > 256:
        index.candidates.clear()
    index.candidates[flt.text] = ids
    return ids
