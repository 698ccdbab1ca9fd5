"""The stale sweep's reports: a formula-safe CSV, and the HTML report's context (rendered through the
templates port: HTML is autoescaped by shared/adapters/templates.py).

Display names, UPNs and mail addresses are written by outsiders (a guest chooses its own display name), so every
CSV cell that a spreadsheet would read as a formula is defused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from shared.domain.stale_plan import StalePlan
from shared.ports.templates import StaleRenderer

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
)


def render_csv(plan: StalePlan) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in plan.items:
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
        )
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8 names correctly


def report_context(plan: StalePlan) -> dict[str, Any]:
    """What the HTML report template is given."""
    actions = sorted({a for counts in plan.per_domain.values() for a in counts})
    return {
        "plan": plan,
        "per_action": sorted(plan.counts.items()),
        "per_domain": sorted(plan.per_domain.items()),
        "actions": actions,
    }


def render_html(templates: StaleRenderer, plan: StalePlan) -> bytes:
    return templates.report_html(report_context(plan)).encode("utf-8")
