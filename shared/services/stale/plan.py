"""Planning a sweep: read the exclusion groups, our stage records and every guest, let the domain decide each
one (shared.domain.stale_plan), then judge the plan (data that looks wrong, caps)."""

from __future__ import annotations

from shared.domain.stale_plan import StalePlan, add_to_plan, check_caps, check_data, new_run_id
from shared.ports.graph import GraphError
from shared.services.stale import scan
from shared.services.stale.deps import StaleDeps, load_memories


async def build_plan(deps: StaleDeps, run_id: str | None = None, *, dry_run: bool | None = None) -> StalePlan:
    now = deps.clock()
    plan = StalePlan(run_id or new_run_id(now), now, deps.config.dry_run if dry_run is None else dry_run)
    excluded: set[str] = set()
    for group_id in sorted(deps.policy.exclude_group_ids):
        excluded |= await deps.graph.group_member_ids(group_id)
    memories = await load_memories(deps.state)
    try:
        concurrency = scan.effective_concurrency(deps.config.scan_concurrency, deps.config.sign_in_activity_per_minute)
        pages = scan.iter_guest_pages(deps.graph, concurrency=concurrency, now=now)
        async for page in pages:
            for user in page:
                add_to_plan(plan, user, memories.get(user.id), now, deps.policy, user.id in excluded)
            if deps.on_progress:
                deps.on_progress("reading", plan.guests_seen)
        plan.items.sort(key=lambda item: item.user_id)  # the same plan whatever order the pages came in
    except GraphError as exc:
        if exc.status in (401, 403):
            plan.status = "aborted"
            plan.message = (
                f"Graph refused to list guests with signInActivity ({exc.status} {exc.code}): the tenant needs "
                "Entra ID P1/P2 and the app needs AuditLog.Read.All (and User.Read.All). Nothing was changed."
            )
            return plan
        raise
    check_data(plan, deps.config.abort_missing_activity_percent)
    if plan.status == "planned":
        check_caps(plan, deps.config.max_actions, deps.config.max_percent)
    if plan.status == "planned" and plan.dry_run:
        plan.status = "dry-run"
    return plan
