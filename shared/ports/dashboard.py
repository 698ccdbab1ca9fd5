"""The dashboard's renderer port: a page name and its context in, HTML out (autoescaped: guests name themselves)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class DashboardRenderer(Protocol):
    def page(self, name: str, context: Mapping[str, Any]) -> str:
        """The HTML of the page `name` (shared/templates/dashboard/<name>.html)."""
        ...


class GuestNames(Protocol):
    """Display names for the guests on one page of the dashboard (at most a page's worth of ids: a look-up, never
    a directory scan)."""

    async def names(self, user_ids: list[str]) -> dict[str, str]: ...
