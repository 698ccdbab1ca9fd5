"""The stale sweep's reports: a formula-safe CSV, and the HTML report (rendered through the templates port:
HTML is autoescaped by shared/adapters/templates.py).

Both are streamed to the report store from the run's parts (one part in memory at a time), so a 100,000-guest
report costs no more memory than a small one.

Display names, UPNs and mail addresses are written by outsiders (a guest chooses its own display name), so every
CSV cell that a spreadsheet would read as a formula is defused.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from shared.domain.posture import PostureReport
from shared.domain.reinvite import reinvite_label
from shared.domain.stale import ACT_ORDER
from shared.domain.stale_plan import PlanItem, StalePlan
from shared.ports.reports import ReportStore
from shared.services.posture import latest_posture
from shared.services.stale.parts import acted_name, read_part, report_name

if TYPE_CHECKING:
    from shared.services.stale.deps import StaleDeps

log = logging.getLogger(__name__)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not execute: text starting with = + - @ (or tab/CR) gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = (
    "runId",
    "action",
    "outcome",
    "userId",
    "displayName",
    "userPrincipalName",
    "mail",
    "homeDomain",
    "reason",
    "basis",
    "inactiveSince",
    "inactiveDays",
    "thresholdDays",
    "lastSignIn",
    "lastNonInteractiveSignIn",
    "lastSuccessfulSignIn",
    "stage",
    "stageSince",
    "licencesTakenBack",
    "reinvite",
)


def csv_row(plan: StalePlan, item: PlanItem) -> list[str]:
    ev = item.evidence
    row: Iterable[object] = (
        plan.run_id,
        item.action,
        item.outcome,
        item.user_id,
        item.display_name,
        item.user_principal_name,
        item.mail,
        item.home_domain,
        item.reason,
        ev.get("basis"),
        ev.get("inactiveSince"),
        ev.get("inactiveDays"),
        ev.get("thresholdDays"),
        ev.get("lastSignIn"),
        ev.get("lastNonInteractiveSignIn"),
        ev.get("lastSuccessfulSignIn"),
        ev.get("stage"),
        ev.get("stageSince"),
        " ".join([*(ev.get("reclaim") or {}).get("skus", ()), *(ev.get("reclaim") or {}).get("groups", ())]),
        reinvite_label(ev, item.outcome),
    )
    return [csv_cell(v) for v in row]


async def iter_items(reports: ReportStore, plan: StalePlan) -> AsyncIterator[PlanItem]:
    """The run's items with their outcomes, in plan order: acted parts once acted on; otherwise the plan's,
    marked would-do (dry run) or not-done (capped, aborted)."""
    acted = plan.status in ("applied", "incomplete")
    report = report_name(plan.run_id)
    for name in plan.parts:
        _, items = await read_part(reports, report, name)
        if not acted:
            for item in items:
                item.outcome = "would-do" if plan.status == "dry-run" else "not-done"
                yield item
            continue
        for action in ACT_ORDER:
            if any(item.action is action for item in items):
                for item in (await read_part(reports, report, acted_name(name, str(action))))[1]:
                    yield item


async def csv_chunks(deps: StaleDeps, plan: StalePlan) -> AsyncIterator[bytes]:
    """The CSV, a part's worth of rows at a time; the BOM makes Excel read UTF-8 names correctly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield _drain(out, "utf-8-sig")
    rows = 0
    async for item in iter_items(deps.reports, plan):
        writer.writerow(csv_row(plan, item))
        rows += 1
        if rows % 500 == 0:
            yield _drain(out)
    yield _drain(out)


def _drain(out: io.StringIO, encoding: str = "utf-8") -> bytes:
    """What was written since the last drain; the buffer starts over."""
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text.encode(encoding)


class ReportView:
    """The plan as the HTML template sees it: its fields, and `items` streamed from the parts."""

    def __init__(self, plan: StalePlan, items: AsyncIterator[PlanItem]) -> None:
        self._plan = plan
        self.items = items

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plan, name)


def report_context(deps: StaleDeps, plan: StalePlan, posture: PostureReport | None = None) -> dict[str, Any]:
    """What the HTML report template is given (`plan.items` is an async iterator; `posture` the nightly posture
    checks' latest result, read from the state store, or None)."""
    actions = sorted({a for counts in plan.per_domain.values() for a in counts})
    return {
        "plan": ReportView(plan, iter_items(deps.reports, plan)),
        "per_action": sorted(plan.counts.items()),
        "per_domain": sorted(plan.per_domain.items()),
        "actions": actions,
        "reinvite_label": reinvite_label,
        "posture": posture,
    }


async def html_chunks(deps: StaleDeps, plan: StalePlan) -> AsyncIterator[bytes]:
    posture = await latest_posture(deps.state)
    async for text in deps.templates.report_html(report_context(deps, plan, posture)):
        yield text.encode("utf-8")


CHUNK_BYTES = 256 * 1024
"""Reports reach the store in pieces of about this size (Jinja yields a few bytes at a time; a write each was
most of a sweep's time)."""


async def coalesce(chunks: AsyncIterator[bytes], size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    pending: list[bytes] = []
    held = 0
    async for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


async def write_reports(deps: StaleDeps, plan: StalePlan) -> list[str]:
    """Stream the CSV and HTML reports; a report store that fails is logged, not fatal (the audit entry of the
    run is written either way)."""
    csv_name, html_name = f"stale-{plan.run_id}.csv", f"stale-{plan.run_id}.html"
    try:
        return [
            await deps.reports.write_stream(csv_name, coalesce(csv_chunks(deps, plan)), "text/csv"),
            await deps.reports.write_stream(html_name, coalesce(html_chunks(deps, plan)), "text/html"),
        ]
    except OSError as exc:
        log.error("stale sweep %s: the report could not be written: %s", plan.run_id, exc)
        return []
