"""The mailer port: send one mail as the configured sender (Graph sendMail in Azure and locally).

Not idempotent on the wire: services guard every send with a ledger claim (and a write-ahead marker where a
crash mid-send must not mail twice). Implemented by the Graph gateway (shared/adapters/graph/).
"""

from __future__ import annotations

from typing import Protocol

from shared.domain.directory import OutgoingMail

__all__ = ["Mailer"]


class Mailer(Protocol):
    async def send_mail(self, mail: OutgoingMail) -> None:
        """Send `mail` from `mail.sender`; raises GraphError (shared/ports/graph.py) when Graph refuses."""
        ...
