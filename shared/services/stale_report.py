"""Rendering of the stale sweep's mails and reports: Jinja2 templates, autoescaped HTML, formula-safe CSV.

Display names, UPNs and mail addresses are written by outsiders (a guest chooses its own display name), so
everything that lands in HTML is escaped by Jinja2's autoescape, and every CSV cell that a spreadsheet would
read as a formula is defused. Templates live in shared/templates/stale/; STALE_TEMPLATE_DIR overrides any of
them file by file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.risk import safe_subject

if TYPE_CHECKING:
    from shared.services.stale import StalePlan

DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "stale"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def template_environment(override: Path | None = None) -> Environment:
    """Templates from `override` first, then the built-in ones. `.html` is autoescaped; `.txt` (subjects) is
    plain text and is flattened to one line by the caller."""
    folders = [str(override)] if override else []
    folders.append(str(DEFAULT_TEMPLATE_DIR))
    return Environment(
        loader=FileSystemLoader(folders),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


def render_mail(env: Environment, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, html body) from `<name>.subject.txt` and `<name>.html`."""
    subject_env = env.overlay(autoescape=False)
    subject = subject_env.get_template(f"{name}.subject.txt").render(context)
    body = env.get_template(f"{name}.html").render(context)
    return safe_subject(subject), body  # one line: no controls, no bidi overrides (a name is in it)


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


def render_html(env: Environment, plan: StalePlan) -> bytes:
    actions = sorted({a for counts in plan.per_domain.values() for a in counts})
    context = {
        "plan": plan,
        "per_action": sorted(plan.counts.items()),
        "per_domain": sorted(plan.per_domain.items()),
        "actions": actions,
    }
    return env.get_template("report.html").render(context).encode("utf-8")
