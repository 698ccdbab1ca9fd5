"""The ticket port: open a remediation ticket with a guest's home organisation.

Adapters: shared/adapters/tickets.py (signed webhook, ServiceNow, e-mail), chosen per partner by the partner
directory (RISK_PARTNER_DIRECTORY, docs/risk-tickets.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Protocol

from shared.domain.risk import Ticket

__all__ = ["NamedPartner", "PartnerSinks", "SinkKind", "TicketSink", "TicketSinkError"]

SinkKind = Literal["webhook", "servicenow", "email"]


class TicketSinkError(Exception):
    """A sink refused or failed to take a ticket (retried, then the message fails)."""


class TicketSink(ABC):
    """Open one ticket, return the sink's reference for it (a ticket number, an id)."""

    kind: SinkKind

    @abstractmethod
    async def open(self, ticket: Ticket) -> str: ...


class NamedPartner(Protocol):
    @property
    def name(self) -> str:
        """The partner organisation, as named in the partner directory (audited with each ticket)."""
        ...


class PartnerSinks(Protocol):
    def resolve(self, tenant_id: str | None, domain: str | None) -> tuple[NamedPartner, TicketSink]:
        """The partner and its sink for a home tenant: by tenant id, else its default domain, else the default."""
        ...
