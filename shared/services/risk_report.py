"""Use case: the admin's view of risk incidents (`guestwarden blocked`), straight from the audit log.

The audit log is the record of what happened (detected, notice sent or not, ticket opened where): this view
only folds its entries per incident, so it shows exactly what the flows recorded, nothing inferred.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.ports.state import AuditEntry, AuditLog
from shared.services.risk_detection import RISK_INCIDENT
from shared.services.risk_response import NOTIFY, TICKET


@dataclass(frozen=True, slots=True)
class BlockedIncident:
    incident_id: str
    user_id: str
    guest: str
    home_tenant_id: str
    home_organisation: str
    detected: datetime | None
    error_code: int | None
    notice: str
    ticket: str
    ticket_id: str
    sink: str

    @property
    def state(self) -> str:
        """open: something still to do or failed; done: the guest was told and the home tenant has a ticket."""
        if "failed" in (self.notice, self.ticket) or "pending" in (self.notice, self.ticket):
            return "open"
        return "done"

    def as_json(self) -> dict[str, Any]:
        return {
            "incidentId": self.incident_id,
            "userId": self.user_id,
            "guest": self.guest,
            "homeTenantId": self.home_tenant_id,
            "homeOrganisation": self.home_organisation,
            "detected": self.detected.isoformat() if self.detected else None,
            "errorCode": self.error_code,
            "notice": self.notice,
            "ticket": self.ticket,
            "ticketId": self.ticket_id,
            "sink": self.sink,
            "state": self.state,
        }


async def blocked_incidents(audit: AuditLog, since: datetime) -> list[BlockedIncident]:
    """Incidents detected or acted on since `since`, newest first."""
    incidents: dict[str, BlockedIncident] = {}
    async for entry in audit.query(since):
        incident_id = str(entry.evidence.get("incidentId") or "")
        if not incident_id or entry.action not in (RISK_INCIDENT, NOTIFY, TICKET):
            continue
        current = incidents.get(incident_id) or _empty(incident_id, entry)
        incidents[incident_id] = fold(current, entry)
    return sorted(incidents.values(), key=lambda i: i.detected or since, reverse=True)


def _empty(incident_id: str, entry: AuditEntry) -> BlockedIncident:
    return BlockedIncident(incident_id, entry.subject, entry.subject, "", "", None, None, "pending", "pending", "", "")


def fold(incident: BlockedIncident, entry: AuditEntry) -> BlockedIncident:
    evidence = entry.evidence
    if entry.action == RISK_INCIDENT:
        code = evidence.get("errorCode")
        return replace(
            incident,
            guest=str(evidence.get("userPrincipalName") or entry.subject),
            home_tenant_id=str(evidence.get("homeTenantId") or ""),
            detected=entry.at,
            error_code=code if isinstance(code, int) else None,
        )
    if entry.action == NOTIFY:
        return replace(incident, notice=entry.outcome)
    return replace(
        incident,
        ticket=entry.outcome,
        ticket_id=str(evidence.get("ticketId") or incident.ticket_id),
        sink=str(evidence.get("sink") or incident.sink),
        home_organisation=str(
            evidence.get("homeOrganisation") or evidence.get("partner") or incident.home_organisation
        ),
    )
