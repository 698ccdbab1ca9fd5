"""A controllable UTC clock: tests move time instead of sleeping (delta expiry, grace periods, windows)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def parse_dt(value: str) -> datetime:
    """Parse Graph's ISO 8601 timestamps ("...Z", up to 7 fractional digits) into aware UTC datetimes."""
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
    """Thread-safe clock shared by the server thread and the test thread."""

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self._now = self._checked(start)

    @staticmethod
    def _checked(moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError("the simulator clock needs timezone-aware datetimes")
        return moment.astimezone(UTC)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = self._checked(moment)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now = self._now + delta
            return self._now
