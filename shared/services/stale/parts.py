"""A run's plan, page by page, in the report store: each part is one page's tally and the items it acts on.

`plan-…` parts are written while reading (shared/services/stale/plan.py); once a part's items of one action
were acted on, those items with their outcomes are written as the part's `acted-<action>-…` part. The CSV and HTML
reports are streamed from these parts, one part in memory at a time.
"""

from __future__ import annotations

import json
from typing import Any

from shared.domain.stale_plan import PlanItem
from shared.ports.reports import ReportStore


def report_name(run_id: str) -> str:
    return f"stale-{run_id}"


def acted_name(name: str, action: str) -> str:
    """The outcomes of one action's items of a plan part."""
    return name.replace("plan-", f"acted-{action}-", 1)


async def write_part(
    reports: ReportStore, report: str, name: str, tally: dict[str, Any], items: list[PlanItem]
) -> None:
    body = {"tally": tally, "items": [item.to_part() for item in items]}
    await reports.put_part(report, name, json.dumps(body, separators=(",", ":")).encode("utf-8"))


async def read_part(
    reports: ReportStore, report: str, name: str, *, items: bool = True
) -> tuple[dict[str, Any], list[PlanItem]]:
    body = json.loads(await reports.get_part(report, name))
    found = [PlanItem.from_part(value) for value in body.get("items", ())] if items else []
    return dict(body.get("tally") or {}), found
