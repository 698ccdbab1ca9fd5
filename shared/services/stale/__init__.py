"""Use case: the nightly stale-guest sweep, and undoing it (flow 4).

`sweep_stale_guests` (execute.py):

1. reads the exclusion groups' members, our stage records (who was warned or disabled when) and then the guests
   with signInActivity page by page (scan.py: partitioned for large tenants), and lets the domain decide each
   one (shared.domain.stale, gathered by shared.domain.stale_plan) (plan.py); each page's decisions go to the
   report store as a part of the run (parts.py), so memory stays flat in the tenant's size;
2. refuses to act when the data looks wrong: Graph refused signInActivity, or more than
   STALE_ABORT_MISSING_ACTIVITY_PERCENT of the guests lack it (no Entra ID P1/P2, or AuditLog.Read.All missing);
3. refuses to act when the plan would warn/disable/delete more than STALE_MAX_ACTIONS guests or
   STALE_MAX_PERCENT of them; the plan is still reported, for review;
4. in a dry run (the default) stops there; otherwise acts in `$batch`es, every step claimed in the idempotency
   ledger first, so a rerun after a crash repeats nothing and skips nothing (execute.py);
5. audits every action with its evidence (correlation id = the run id), and streams a CSV and an HTML report
   from the parts (report.py, templates through shared.ports.templates).

A run survives its invocation (journal.py): its progress is in state, an invocation hands it on when its time
slice ends, and `resume_stale_sweeps` (the resume timer) continues a run whose invocation stopped or died.

`restore_guest` / `restore_run` (restore.py) undo what the sweep did (restore from deletedItems within 30 days,
re-enable what we disabled); the guest's inactivity clock then restarts.

The sweep's wiring is StaleDeps (deps.py), built by shared.bootstrap.
"""

from __future__ import annotations

from shared.domain.stale import RESTORE_WINDOW
from shared.domain.stale_plan import PlanItem, StalePlan, new_run_id
from shared.services.stale.deps import (
    ACTOR,
    LEASE_SECONDS,
    RECORD_KIND,
    Progress,
    StaleConfig,
    StaleDeps,
    load_memories,
)
from shared.services.stale.execute import REQUESTS_PER_USER, resume_stale_sweeps, sweep_stale_guests
from shared.services.stale.journal import current_run, run_record
from shared.services.stale.report import iter_items
from shared.services.stale.restore import RestoreOutcome, restore_guest, restore_run

__all__ = [
    "ACTOR",
    "LEASE_SECONDS",
    "RECORD_KIND",
    "REQUESTS_PER_USER",
    "RESTORE_WINDOW",
    "PlanItem",
    "Progress",
    "RestoreOutcome",
    "StaleConfig",
    "StaleDeps",
    "StalePlan",
    "current_run",
    "iter_items",
    "load_memories",
    "new_run_id",
    "restore_guest",
    "restore_run",
    "resume_stale_sweeps",
    "run_record",
    "sweep_stale_guests",
]
