"""The clock port: every service asks an injected `Clock` for the time instead of reading the wall clock.

Tests move a fake clock instead of sleeping; the local world hands the simulator's clock to the app
(shared.bootstrap `AppServices.use_clock`), so a jump moves the app, the host and the simulator together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

__all__ = ["Clock", "utc_now"]

Clock: TypeAlias = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    """The default clock: the wall clock, in UTC."""
    return datetime.now(UTC)
