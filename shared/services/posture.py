"""Use case: the guest posture checks (`guestwarden posture`, the nightly posture timer, the doctor).

Every read goes through `_read`: a refusal (a permission the admin chose not to grant, a tenant without Entra ID
P1, Graph unavailable) becomes `Unavailable(reason)` and the checks that needed it show `unknown`; nothing here
raises for what Graph answers. The judging is pure (shared.domain.posture).

The latest report is kept in the state store (kind `posture`, key `latest`): the sweep's HTML report shows it as
its posture section, so reading it costs no Graph call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from shared.domain.directory import DirectoryUser
from shared.domain.posture import (
    GUEST_INVITER_ROLE,
    BlockedGuests,
    HygieneCounts,
    HygieneRules,
    PostureReport,
    RiskFlow,
    Unavailable,
    check_guest_access,
    check_guest_mfa,
    check_hygiene,
    check_invites,
    check_premium,
    check_risk_policies,
    count_guest,
    ordered,
    premium_of,
)
from shared.domain.risk import HOME_TENANT_RISK_ALT_CODE, HOME_TENANT_RISK_CODE, is_cross_tenant
from shared.ports.graph import GraphError, PostureGraph
from shared.ports.state import ANY_ETAG, RecordStore, StateError
from shared.services.census import record_seats
from shared.services.risk_detection import WATERMARK_KEY, WATERMARK_KIND

log = logging.getLogger(__name__)

RECORD_KIND = "posture"
RECORD_KEY = "latest"
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"

T = TypeVar("T")


@dataclass(frozen=True)
class PostureConfig:
    pending_days: int = 90
    inactive_days: int = 90
    guest_group_id: str | None = None
    """The tenant's all-guests group: a risk policy that excludes it leaves guests out (seed 000)."""
    hygiene: bool = True
    """Read every guest for the hygiene counts (a full scan with sponsors: the one costly read)."""
    blocked_days: int = 30
    fail_ratio: float = 0.25


@dataclass
class PostureDeps:
    graph: PostureGraph
    state: RecordStore | None
    config: PostureConfig
    clock: Callable[[], datetime]
    on_progress: Callable[[str, int], None] | None = None
    """Told ("guests", guests read so far) while the hygiene scan runs: the CLI's progress."""


async def _read(what: str, permission: str, read: Callable[[], Awaitable[T]]) -> T | Unavailable:
    try:
        return await read()
    except GraphError as exc:
        if exc.code == NON_PREMIUM:
            reason = f"{what}: the tenant has no Entra ID P1/P2 (Graph: {exc.code})"
        elif exc.status in (401, 403):
            reason = f"{what}: {permission} not granted (Graph {exc.status} {exc.code or ''}".strip() + ")"
        else:
            reason = f"{what}: Graph answered {exc.status} {exc.code or ''}".strip()
        log.warning("posture: %s", reason)
        return Unavailable(reason)


def _home_domain(upn: str) -> str | None:
    """A sign-in's UPN is the guest's own (alice@fabrikam.com) or, in some logs, its guest UPN here
    (alice_fabrikam.com#EXT#@contoso.onmicrosoft.com): the home domain either way."""
    if "#EXT#" in upn:
        return DirectoryUser("", user_principal_name=upn).home_domain
    return upn.rsplit("@", 1)[1].lower() if "@" in upn else None


async def _blocked(deps: PostureDeps) -> BlockedGuests:
    now = deps.clock()
    since = now - timedelta(days=deps.config.blocked_days)
    users: set[str] = set()
    domains: set[str] = set()
    sign_ins = 0
    for code in (HOME_TENANT_RISK_CODE, HOME_TENANT_RISK_ALT_CODE):
        async for page in deps.graph.iter_sign_in_pages(since, now, extra_filter=f"status/errorCode eq {code}"):
            for entry in page:
                if not is_cross_tenant(entry):
                    continue
                sign_ins += 1
                users.add(entry.user_id or entry.user_principal_name or entry.id)
                domain = _home_domain(entry.user_principal_name or "")
                if domain:
                    domains.add(domain)
    return BlockedGuests(deps.config.blocked_days, len(users), sign_ins, tuple(sorted(domains)))


async def _hygiene(deps: PostureDeps, rules: HygieneRules) -> HygieneCounts:
    """The counts, with signInActivity; if that is refused (no P1, no AuditLog.Read.All), the counts that do not
    need it, from a scan without it."""
    refused = await _read("signInActivity", "AuditLog.Read.All", lambda: _count(deps, rules, with_activity=True))
    if not isinstance(refused, Unavailable):
        return refused
    counts = await _count(deps, rules, with_activity=False)
    return replace(counts, sign_ins_unknown=refused.reason.removeprefix("signInActivity: "))


async def _count(deps: PostureDeps, rules: HygieneRules, *, with_activity: bool) -> HygieneCounts:
    counts = HygieneCounts()
    async for page in deps.graph.iter_guest_pages(with_sign_in_activity=with_activity):
        sponsors = await deps.graph.sponsors_of([u.id for u in page]) if page else {}
        for user in page:
            counts = count_guest(counts, user, bool(sponsors.get(user.id)), rules)
        if deps.on_progress:
            deps.on_progress("guests", counts.guests)
    return counts


async def _risk_flow(deps: PostureDeps) -> RiskFlow:
    now = deps.clock()
    if deps.state is None:
        return RiskFlow(None, now)
    try:
        record = await deps.state.get(WATERMARK_KIND, WATERMARK_KEY)
    except StateError:
        return RiskFlow(None, now)
    until = record.value.get("until") if record and isinstance(record.value, dict) else None
    return RiskFlow(datetime.fromisoformat(str(until)) if until else None, now)


async def run_posture(deps: PostureDeps) -> PostureReport:
    """Every posture check, in the issue's order; never raises for a refused read."""
    graph, config = deps.graph, deps.config
    authorization = await _read("authorizationPolicy", "Policy.Read.All", graph.get_authorization_policy)
    holders = await _read(
        "Guest Inviter holders", "RoleManagement.Read.Directory", lambda: graph.list_role_holders(GUEST_INVITER_ROLE)
    )
    policies = await _read("Conditional Access policies", "Policy.Read.All", graph.list_conditional_access_policies)
    skus = await _read("subscribedSkus", "Organization.Read.All", graph.list_subscribed_skus)
    premium = skus if isinstance(skus, Unavailable) else premium_of(skus)
    if deps.state is not None and not isinstance(skus, Unavailable):
        await record_seats(deps.state, skus, deps.clock())  # the dashboard's seats per SKU
    blocked = await _read("sign-in logs", "AuditLog.Read.All and Directory.Read.All", lambda: _blocked(deps))
    rules = HygieneRules(deps.clock(), config.pending_days, config.inactive_days)
    hygiene: HygieneCounts | Unavailable = Unavailable("off (POSTURE_HYGIENE=false)")
    if config.hygiene:
        hygiene = await _read("guests", "User.Read.All", lambda: _hygiene(deps, rules))
    checks = [
        check_invites(authorization, holders),
        check_guest_access(authorization),
        check_guest_mfa(policies, premium, config.guest_group_id),
        check_premium(premium),
        check_risk_policies(policies, await _risk_flow(deps), blocked, config.guest_group_id),
        check_hygiene(hygiene, rules, config.fail_ratio),
    ]
    return PostureReport(deps.clock(), ordered(checks))


async def save_posture(state: RecordStore, report: PostureReport) -> None:
    await state.put(RECORD_KIND, RECORD_KEY, report.as_json(), etag=ANY_ETAG)


async def latest_posture(state: RecordStore) -> PostureReport | None:
    """The last saved report, or None (never run, or unreadable: the report is then left out, not failed)."""
    try:
        record = await state.get(RECORD_KIND, RECORD_KEY)
        return PostureReport.from_json(record.value) if record and isinstance(record.value, dict) else None
    except (StateError, KeyError, ValueError):
        log.warning("posture: the saved report could not be read", exc_info=True)
        return None
