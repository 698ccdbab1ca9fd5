"""A controllable UTC clock: tests move time instead of sleeping (delta expiry, grace periods, windows)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


@functools.lru_cache(maxsize=262_144)
def parse_dt(value: str) -> datetime:
    """Parse Graph's ISO 8601 timestamps ("...Z", up to 7 fractional digits) into aware UTC datetimes.

    Cached: filters compare every stored timestamp on every page (tens of thousands of sign-ins per page walk)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def iso_z(moment: datetime) -> str:
    """Format as Graph does for directory objects: second precision, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """The local world's one clock: real time plus the jumps tests make, shared by the server and test threads.

    It starts at `start` (the simulator's start, by default the wall clock) and ticks with real time, as Graph's
    clock does, so an app reading the wall clock agrees with it for as long as nobody jumps it. A test jumps it
    with advance()/set() (weeks pass in a call) and brings it back with reset(); freeze() stops the ticking for
    assertions on exact instants. Elapsed time is measured on time.monotonic(), which libfaketime shifts along
    with the wall clock, so the clock agrees with every process of a run under `faketime`.
    """

    def __init__(self, start: datetime, *, frozen: bool = False, ticks: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._ticks = ticks
        """Elapsed seconds come from here (time.monotonic; a test can hand in its own)."""
        self._start = self._checked(start)
        self._ticks_from = ticks()
        self._offset = timedelta(0)
        self._frozen_at: datetime | None = self._start if frozen else None

    @staticmethod
    def _checked(moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("the simulator clock needs timezone-aware datetimes")
        return moment.astimezone(UTC)

    def _read(self) -> datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        return self._start + timedelta(seconds=self._ticks() - self._ticks_from) + self._offset

    @property
    def start(self) -> datetime:
        """The moment the clock started at: the instant the tenant fixture was rebased onto."""
        return self._start

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def now(self) -> datetime:
        with self._lock:
            return self._read()

    def set(self, moment: datetime) -> None:
        """Jump to `moment` (forward or back); a ticking clock goes on ticking from there."""
        with self._lock:
            target = self._checked(moment)
            if self._frozen_at is not None:
                self._frozen_at = target
            else:
                self._offset += target - self._read()

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
            else:
                self._offset += delta
            return self._read()

    def reset(self) -> datetime:
        """Undo every jump: back to the start plus the real time elapsed (ticking again)."""
        with self._lock:
            self._offset = timedelta(0)
            self._frozen_at = None
            return self._read()

    def freeze(self) -> datetime:
        """Stop ticking at the current reading (advance/set still move it); reset() starts it again."""
        with self._lock:
            self._frozen_at = self._read()
            return self._frozen_at


def _shifted(value: str, delta: timedelta) -> str:
    """`value` moved by `delta` (whole seconds), in the same style: "...Z", fractional digits kept."""
    head, dot, rest = value.partition(".")
    fraction = f".{rest}" if dot else "Z"
    moved = parse_dt(head if dot else value) + delta
    return moved.strftime("%Y-%m-%dT%H:%M:%S") + fraction


def rebase_tenant(document: dict[str, Any], onto: datetime) -> timedelta:
    """Move the whole tenant in time, in place, so that its own `tenant.now` becomes `onto`.

    A fixture's dates are relative to its `tenant.now` (a guest "accepted 1 h ago" has an
    externalUserStateChangeDateTime 1 h before it); every `...DateTime` value anywhere in the document
    (users, signInActivity, sign-ins, deleted users, role assignments) shifts by the same whole seconds, so the
    same fixture describes the same situation on any day. A document without `tenant.now` is left as it is.
    """
    tenant = document.get("tenant") or {}
    anchor_text = tenant.get("now")
    if not anchor_text:
        return timedelta(0)
    delta = onto.astimezone(UTC).replace(microsecond=0) - parse_dt(anchor_text)
    if delta:
        stack: list[Any] = [document]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(value, str):
                        if key.endswith("DateTime") and value:
                            node[key] = _shifted(value, delta)
                    elif isinstance(value, dict | list):
                        stack.append(value)
            elif isinstance(node, list):
                stack.extend(item for item in node if isinstance(item, dict | list))
    tenant["now"] = iso_z(onto)
    return delta
