"""Jinja2 rendering of the guest notice and the ticket text (shared/templates/risk/, overridable by folder).

HTML templates are autoescaped (a guest's display name is attacker-controlled: it may carry markup); text
templates are not HTML and are never sent as HTML. A template in RISK_TEMPLATE_DIR wins over the built-in one
of the same name, so an operator can override one file and keep the rest. StrictUndefined: a template that
names a variable we do not pass fails at start-up's first render, not silently in a guest's inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.domain.risk import Ticket, safe_subject

BUILT_IN = Path(__file__).resolve().parents[1] / "templates" / "risk"
TEMPLATES = ("subject.txt", "notice.html", "notice.txt", "ticket.txt")
DIGEST_TEMPLATES = ("digest.subject.txt", "digest.html", "digest.txt")


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    subject: str
    html: str
    text: str


class RiskTemplates:
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(override_dir))] if override_dir else []
        self._env = Environment(
            loader=ChoiceLoader([*loaders, FileSystemLoader(str(BUILT_IN))]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        for name in TEMPLATES + DIGEST_TEMPLATES:
            self._env.get_template(name)  # fail at start on a missing or broken template

    def notice(self, context: Mapping[str, Any]) -> RenderedNotice:
        return RenderedNotice(
            subject=safe_subject(self._env.get_template("subject.txt").render(context)),
            html=self._env.get_template("notice.html").render(context),
            text=self._env.get_template("notice.txt").render(context),
        )

    def ticket_text(self, ticket: Ticket) -> str:
        return self._env.get_template("ticket.txt").render(ticket=ticket)

    def digest(self, context: Mapping[str, Any]) -> RenderedNotice:
        """The admins' daily digest (shared.services.risk_digest): same escaping rules as the notice."""
        return RenderedNotice(
            subject=safe_subject(self._env.get_template("digest.subject.txt").render(context)),
            html=self._env.get_template("digest.html").render(context),
            text=self._env.get_template("digest.txt").render(context),
        )
