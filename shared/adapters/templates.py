"""Jinja2 rendering of every text the flows send: one Environment factory, one autoescape policy.

Display names, UPNs and mail addresses are written by outsiders (a guest chooses its own display name; it may
carry markup), so every `.html` template is autoescaped; `.txt` templates (subjects, plain-text bodies,
tickets) are not HTML, are never sent as HTML and are not escaped. Subjects are flattened to one line
(`safe_subject`: no controls, no bidi overrides). StrictUndefined: a template that names a variable we do not
pass fails at its first render, not silently in an inbox.

Templates live in shared/templates/<flow>/; an override folder (RISK_TEMPLATE_DIR, STALE_TEMPLATE_DIR,
LICENSE_WELCOME_TEMPLATE_DIR) wins file by file, so an operator can override one template and keep the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.risk import Ticket, safe_subject
from shared.ports.templates import RenderedNotice

__all__ = ["BUILT_IN", "AttestTemplates", "LicensingTemplates", "RiskTemplates", "StaleTemplates", "environment"]

BUILT_IN = Path(__file__).resolve().parents[1] / "templates"
"""shared/templates: one folder per flow."""


def environment(
    flow: str, override: Path | None = None, *, keep_trailing_newline: bool = False, enable_async: bool = False
) -> Environment:
    """The Jinja2 environment for one flow's templates: `override` first, then the built-in ones. `.html` (and
    a template given as a string) is autoescaped, anything else is not. `enable_async`: templates rendered as a
    stream over async iterables (the sweep report)."""
    folders = [str(override)] if override else []
    folders.append(str(BUILT_IN / flow))
    return Environment(
        loader=FileSystemLoader(folders),
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default_for_string=True, default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=keep_trailing_newline,
        enable_async=enable_async,
    )


class RiskTemplates:
    """The guest notice, the ticket text and the admins' digest (shared/templates/risk/); implements the
    RiskRenderer port. Every template is loaded at construction: a missing or broken one fails at start."""

    TEMPLATES = ("subject.txt", "notice.html", "notice.txt", "ticket.txt")
    DIGEST_TEMPLATES = ("digest.subject.txt", "digest.html", "digest.txt")

    def __init__(self, override_dir: Path | None = None) -> None:
        self._env = environment("risk", override_dir, keep_trailing_newline=True)
        for name in self.TEMPLATES + self.DIGEST_TEMPLATES:
            self._env.get_template(name)

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        return self._env.get_template(name).render(context)

    def notice(self, context: Mapping[str, Any]) -> RenderedNotice:
        return RenderedNotice(
            subject=safe_subject(self._render("subject.txt", context)),
            html=self._render("notice.html", context),
            text=self._render("notice.txt", context),
        )

    def ticket_text(self, ticket: Ticket) -> str:
        return self._env.get_template("ticket.txt").render(ticket=ticket)

    def digest(self, context: Mapping[str, Any]) -> RenderedNotice:
        """The admins' daily digest (shared.services.risk_digest): same escaping rules as the notice."""
        return RenderedNotice(
            subject=safe_subject(self._render("digest.subject.txt", context)),
            html=self._render("digest.html", context),
            text=self._render("digest.txt", context),
        )


class StaleTemplates:
    """The sponsors' and guests' warnings and the run report (shared/templates/stale/); implements the
    StaleRenderer port."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self._env = environment("stale", override_dir)
        self._report_env = environment("stale", override_dir, enable_async=True)

    def mail(self, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """(subject, html body) from `<name>.subject.txt` and `<name>.html`."""
        subject = self._env.get_template(f"{name}.subject.txt").render(context)
        body = self._env.get_template(f"{name}.html").render(context)
        return safe_subject(subject), body  # one line: no controls, no bidi overrides (a name is in it)

    def report_html(self, context: Mapping[str, Any]) -> AsyncIterator[str]:
        """The report as a stream of text: `plan.items` may be an async iterator (one part read at a time)."""
        return self._report_env.get_template("report.html").generate_async(context)


class AttestTemplates:
    """The sponsor attestation pages (shared/templates/attest/page.html; STALE_TEMPLATE_DIR's `attest/` folder
    overrides it); implements the AttestRenderer port. Autoescaped: a guest's display name is its own choice."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self._env = environment("attest", override_dir / "attest" if override_dir else None)
        self._env.get_template("page.html")

    def page(self, context: Mapping[str, Any]) -> str:
        return self._env.get_template("page.html").render(context)


class LicensingTemplates:
    """The welcome mail of a newly licensed guest (shared/templates/licensing/); implements the WelcomeRenderer
    port. Every template is loaded at construction: a missing or broken override fails at start, not in an inbox."""

    TEMPLATES = ("welcome.subject.txt", "welcome.html", "welcome.txt")

    def __init__(self, override_dir: Path | None = None) -> None:
        self._env = environment("licensing", override_dir, keep_trailing_newline=True)
        for name in self.TEMPLATES:
            self._env.get_template(name)

    def welcome(self, context: Mapping[str, Any]) -> RenderedNotice:
        return RenderedNotice(
            subject=safe_subject(self._env.get_template("welcome.subject.txt").render(context)),
            html=self._env.get_template("welcome.html").render(context),
            text=self._env.get_template("welcome.txt").render(context),
        )


class DashboardTemplates:
    """The operator dashboard's pages (shared/templates/dashboard/); implements the DashboardRenderer port.
    Autoescaped: display names are chosen by guests. Every page is loaded at construction."""

    PAGES = (
        "overview",
        "guests",
        "guest",
        "runs",
        "run",
        "risk",
        "posture",
        "deadletters",
        "confirm",
        "done",
        "refused",
    )

    def __init__(self) -> None:
        self._env = environment("dashboard")
        self._env.filters["when"] = lambda value: f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"
        self._env.filters["day"] = lambda value: f"{value:%Y-%m-%d}" if value else "-"
        for name in self.PAGES:
            self._env.get_template(f"{name}.html")

    def page(self, name: str, context: Mapping[str, Any]) -> str:
        return self._env.get_template(f"{name}.html").render(context)
