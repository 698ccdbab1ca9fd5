"""What the stale sweep is given (its ports, policy and settings) and the state records it keeps."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.domain.reinvite import ReinviteConfig
from shared.domain.stale import StageMemory, StalePolicy
from shared.domain.stale_plan import PlanItem, StalePlan
from shared.ports.graph import StaleGraph
from shared.ports.reports import ReportStore
from shared.ports.state import AuditEntry, StateStore
from shared.ports.templates import StaleRenderer
from shared.services.audit import Auditor
from shared.services.census import STAGE_KIND, write_stage
from shared.services.licensing import Alerting

if TYPE_CHECKING:
    from shared.services.attestation import AttestConfig

ACTOR = "stale-sweep"
RECORD_KIND = STAGE_KIND
LEASE_SECONDS = 300
"""How long a run (and each action it claims) stays with the invocation working on it without a sign of life:
a run whose invocation died is continued after this (STALE_SWEEP_LEASE_SECONDS)."""


@dataclass(frozen=True, slots=True)
class StaleConfig:
    dry_run: bool = True
    max_actions: int = 50
    max_percent: float = 10.0
    abort_missing_activity_percent: float = 50.0
    scan_concurrency: int = 1
    """createdDateTime ranges read at once (shared/services/stale/scan.py); 1 reads one nextLink chain."""
    sign_in_activity_per_minute: int = 0
    """The signInActivity quota the gateway paces to (0: none). When it, not latency, is the limit, ranges read
    at once gain nothing and cost partial pages: the scan reads one chain (scan.effective_concurrency)."""
    notify_guest: bool = False
    mail_sender: str | None = None
    lease_seconds: int = LEASE_SECONDS
    """STALE_SWEEP_LEASE_SECONDS: the run's lease, renewed at every checkpoint (journal.py)."""
    slice_seconds: float = 0
    """STALE_SWEEP_SLICE_MINUTES in seconds: an invocation hands the run on after this (0: no limit, the CLI)."""
    resume_max_hours: float = 20
    """STALE_RESUME_MAX_HOURS: an unfinished run older than this is abandoned, and a new run decides again."""
    fallback_reviewers: tuple[str, ...] = ()
    """STALE_FALLBACK_REVIEWERS: who gets a warning when the guest has no sponsor with a mail address."""
    attest: AttestConfig | None = None
    """Sponsor attestation links in the warnings (None: off)."""
    alerting: Alerting = field(default_factory=lambda: Alerting(None, ()))
    """Who is told when a returning guest's licences cannot be given back (MAIL_SENDER, ADMIN_ALERT_RECIPIENTS)."""
    exclude_group_max_members: int = 50_000
    """STALE_EXCLUDE_GROUP_MAX_MEMBERS: an exclusion group with more transitive members aborts the run."""
    reinvite: ReinviteConfig = field(default_factory=ReinviteConfig)
    """STALE_REINVITE_REDIRECT_URL and STALE_REINVITE_MESSAGE: how a never-redeemed invitation is re-sent when its
    guest is warned (whether: STALE_REINVITE_PENDING, the policy's `reinvite_pending`)."""


Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class StaleDeps:
    graph: StaleGraph
    state: StateStore
    reports: ReportStore
    templates: StaleRenderer
    policy: StalePolicy
    config: StaleConfig
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"stale-{uuid.uuid4()}")
    on_progress: Progress | None = None
    """Called with ("reading", guests read, guests in the tenant or None) and ("acting", actions done, actions
    planned): the CLI's progress bar."""


async def load_memories(state: StateStore) -> dict[str, StageMemory]:
    return {r.key: StageMemory.from_json(r.value) async for r in state.list_records(RECORD_KIND)}


async def write_memory(deps: StaleDeps, user_id: str, value: Any) -> None:
    """The stage record an action's outcome carries (None: the guest left the lifecycle), moved in the tally."""
    await write_stage(deps.state, user_id, StageMemory.from_json(value) if isinstance(value, dict) else None)


def audit_entry(deps: StaleDeps, plan: StalePlan, item: PlanItem, outcome: str, extra: dict[str, Any]) -> AuditEntry:
    """The audit entry of one item's action, with the evidence it rested on (correlation id = the run id)."""
    return Auditor(deps.state, ACTOR, deps.clock).entry(
        f"stale-{item.action}",
        item.user_id,
        reason=item.reason,
        outcome=outcome,
        evidence={**item.evidence, **extra, "scope": item.scope, "reEnable": item.enable},
        correlation_id=plan.run_id,
    )


async def audit(deps: StaleDeps, plan: StalePlan, item: PlanItem, outcome: str, extra: dict[str, Any]) -> None:
    await deps.state.append(audit_entry(deps, plan, item, outcome, extra))
