"""Timer triggers: NCRONTAB (seconds first) or TimeSpan schedules, on a clock tests can drive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from croniter import croniter

from .settings import is_timespan, parse_timespan


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@runtime_checkable
class SettableClock(Clock, Protocol):
    """A clock the host can move through timer occurrences (ManualClock, the Graph simulator's clock)."""

    def set(self, when: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told: the host moves it through each occurrence in advance_clock()."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start or datetime.now(UTC))

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _aware(when)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


@dataclass(frozen=True)
class Schedule:
    """A timer schedule; NCRONTAB is evaluated in UTC (the Linux Functions default)."""

    expression: str

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after `when`."""
        when = _aware(when)
        if is_timespan(self.expression):
            return when + parse_timespan(self.expression)
        six_fields = len(self.expression.split()) == 6
        result: datetime = croniter(self.expression, when, second_at_beginning=six_fields).get_next(datetime)
        return result

    def between(self, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
        """Occurrences in (start, end], at most `limit` (a guard against a per-second schedule over a year)."""
        occurrences: list[datetime] = []
        current = self.next_after(start)
        while current <= end:
            occurrences.append(current)
            if len(occurrences) > limit:
                raise ValueError(f"more than {limit} occurrences of '{self.expression}' between {start} and {end}")
            current = self.next_after(current)
        return occurrences


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("clock times must be timezone-aware (UTC)")
    return when.astimezone(UTC)
