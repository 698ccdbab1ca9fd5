"""The templates port: the texts the flows send (mails, notices, tickets, reports), rendered from a context.

Services never see a template engine: they hand a context to a renderer and get text back. The one adapter is
shared/adapters/templates.py (Jinja2; HTML autoescaped, text not; an override folder wins file by file).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain.risk import Ticket

__all__ = ["AttestRenderer", "RenderedNotice", "RiskRenderer", "StaleRenderer", "WelcomeRenderer"]


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    subject: str
    """One line: no controls, no bidi overrides (a guest's name may be in it)."""
    html: str
    text: str


class RiskRenderer(Protocol):
    """The risk flows' texts (shared/templates/risk/)."""

    def notice(self, context: Mapping[str, Any]) -> RenderedNotice:
        """The notice to a guest's home tenant."""
        ...

    def ticket_text(self, ticket: Ticket) -> str: ...

    def digest(self, context: Mapping[str, Any]) -> RenderedNotice:
        """The admins' daily digest."""
        ...


class StaleRenderer(Protocol):
    """The stale sweep's texts (shared/templates/stale/)."""

    def mail(self, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
        """(subject, html body) of the mail `name` (sponsor_warning, guest_warning)."""
        ...

    def report_html(self, context: Mapping[str, Any]) -> AsyncIterator[str]:
        """The run's HTML report, as a stream of text (its items are read while it renders)."""
        ...


class AttestRenderer(Protocol):
    """The sponsor attestation pages (shared/templates/attest/)."""

    def page(self, context: Mapping[str, Any]) -> str:
        """The HTML page for `context["view"]` (confirm, keep, remove, refused ...), autoescaped."""
        ...


class WelcomeRenderer(Protocol):
    """The licensing flow's welcome mail (shared/templates/licensing/welcome.*)."""

    def welcome(self, context: Mapping[str, Any]) -> RenderedNotice:
        """Subject, HTML body and text body of the mail a newly licensed guest gets."""
        ...
