"""The report store port: where the nightly sweep's HTML/CSV reports go.

Adapters: shared/adapters/reports.py (a local folder, Azure Blob Storage). Both are tested against the same
expectations in tests/integration/test_report_store.py.
"""

from __future__ import annotations

import abc

__all__ = ["ReportStore", "ReportStoreError"]


class ReportStoreError(OSError):
    """A report could not be stored; the message names the target and the setting that chose it."""


class ReportStore(abc.ABC):
    """Stores a named report; returns where it went (a path or URL an operator can open)."""

    @abc.abstractmethod
    async def write(self, name: str, content: bytes, content_type: str) -> str: ...
