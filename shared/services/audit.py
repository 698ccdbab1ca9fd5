"""The one way a use case builds its audit entry: `Auditor(state, actor, clock).record(...)` writes it now;
`Auditor(...).entry(...)` only builds it, for a write that carries it (`Ledger.complete(claim, outcome,
audit=entry)`: the claim's completion and its audit entry in one state write, so a crash cannot keep one
without the other).

Every action or decision guestwarden takes is appended to the audit log (shared/ports/state.py `AuditLog`) with
when, who (the job), what, to whom, why and the evidence it rested on; the dashboard, the CLI's `audit` command and
the reports read it back. Dry runs are recorded as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.ports.clock import Clock
from shared.ports.state import AuditEntry, AuditLog


@dataclass(frozen=True, slots=True)
class Auditor:
    log: AuditLog
    actor: str
    """Which job writes, e.g. "license-processor", "stale-sweep"."""
    clock: Clock

    async def record(
        self,
        action: str,
        subject: str,
        *,
        outcome: str = "done",
        reason: str = "",
        evidence: Mapping[str, object] | None = None,
        correlation_id: str = "",
        dry_run: bool = False,
    ) -> None:
        """Append one entry, stamped with the auditor's clock and actor."""
        await self.log.append(
            self.entry(
                action,
                subject,
                outcome=outcome,
                reason=reason,
                evidence=evidence,
                correlation_id=correlation_id,
                dry_run=dry_run,
            )
        )

    def entry(
        self,
        action: str,
        subject: str,
        *,
        outcome: str = "done",
        reason: str = "",
        evidence: Mapping[str, object] | None = None,
        correlation_id: str = "",
        dry_run: bool = False,
    ) -> AuditEntry:
        """The entry `record` would append, stamped now, without writing it (for `Ledger.complete(...,
        audit=...)`)."""
        return AuditEntry(
            at=self.clock(),
            actor=self.actor,
            action=action,
            subject=subject,
            reason=reason,
            dry_run=dry_run,
            outcome=outcome,
            evidence=dict(evidence or {}),
            correlation_id=correlation_id,
        )
