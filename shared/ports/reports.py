"""The report store port: where the nightly sweep's HTML/CSV reports go, and the parts of a run's plan.

Adapters: shared/adapters/reports.py (a local folder, Azure Blob Storage). Both are tested against the same
expectations in tests/integration/test_report_store.py.

A sweep does not hold its plan in memory: it writes it page by page as *parts* of the run (`put_part`), reads
them back to act and to report (`get_part`), and streams its reports (`write_stream`), so its memory stays flat
in the size of the tenant and another invocation can continue a run that was cut off.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable

__all__ = ["ReportStore", "ReportStoreError"]


class ReportStoreError(OSError):
    """A report could not be stored; the message names the target and the setting that chose it."""


class ReportStore(abc.ABC):
    """Stores a named report; returns where it went (a path or URL an operator can open)."""

    @abc.abstractmethod
    async def write(self, name: str, content: bytes, content_type: str) -> str: ...

    @abc.abstractmethod
    async def write_stream(self, name: str, chunks: AsyncIterable[bytes], content_type: str) -> str:
        """`write`, from chunks produced while writing (never joined in memory). The report appears whole or
        not at all: a failure midway leaves no partial report under `name`."""

    @abc.abstractmethod
    async def read(self, name: str) -> bytes:
        """A report stored by `write`/`write_stream` (the dashboard serves it); ReportStoreError if missing."""

    @abc.abstractmethod
    async def put_part(self, report: str, name: str, content: bytes) -> None:
        """Store (or replace) one working part of report `report` (e.g. `stale-<run id>`)."""

    @abc.abstractmethod
    async def get_part(self, report: str, name: str) -> bytes:
        """A part stored by `put_part`; ReportStoreError if it is missing."""
