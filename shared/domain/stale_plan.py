"""The stale sweep's plan, as pure decisions over a whole run: who is acted on and why, whether the data is
trustworthy, whether the run stays under its caps, and what we remember about a guest after acting.

shared.domain.stale decides one guest; this module gathers those decisions into a `StalePlan` (the run's
counts) and `PlanItem`s (the guests acted on), and judges the plan. The plan's items are not kept in memory:
the service writes them page by page to the report store as the plan's parts (`PlanItem.to_part`), so a run's
memory does not grow with the tenant and a run cut off can be continued (shared/services/stale/). No I/O here.
"""

from __future__ import annotations

import math
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.census import RunSummary, invitation_state
from shared.domain.directory import SELF_SERVICE_SIGN_UP, DirectoryUser
from shared.domain.reinvite import REINVITE_EVIDENCE, ReinviteState, plan_reinvite
from shared.domain.stale import ACTING, Action, Reclaim, Stage, StageMemory, StalePolicy, decide, reclaim_of

__all__ = [
    "PlanItem",
    "StalePlan",
    "add_to_plan",
    "check_caps",
    "check_data",
    "check_exclusion_group",
    "memory_after",
    "new_run_id",
    "part_name",
]


@dataclass(slots=True)
class PlanItem:
    """One guest the run acts on (or would): what, why, on which evidence, and how it ended."""

    user_id: str
    display_name: str
    user_principal_name: str
    mail: str
    home_domain: str
    account_enabled: bool | None
    action: Action
    reason: str
    scope: str
    evidence_items: tuple[tuple[str, ...], tuple[Any, ...]]
    """The evidence as (keys, values), the keys tuple shared by all items: a plan can hold tens of thousands of
    items, and a dict each was a third of a 100,000-guest sweep's memory (bench/RESULTS.md)."""
    enable: bool = False
    restart_clock: bool = False
    memory: StageMemory | None = None
    outcome: str = "planned"

    @property
    def evidence(self) -> dict[str, Any]:
        keys, values = self.evidence_items
        return dict(zip(keys, values, strict=True))

    def as_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "displayName": self.display_name,
            "userPrincipalName": self.user_principal_name,
            "mail": self.mail,
            "homeDomain": self.home_domain,
            "action": str(self.action),
            "reason": self.reason,
            "outcome": self.outcome,
            "reEnable": self.enable,
            "evidence": self.evidence,
        }

    def to_part(self) -> dict[str, Any]:
        """Everything the run needs to act on the item later (another invocation, after a restart)."""
        return {
            **self.as_json(),
            "accountEnabled": self.account_enabled,
            "scope": self.scope,
            "restartClock": self.restart_clock,
            "memory": self.memory.to_json() if self.memory else None,
        }

    @classmethod
    def from_part(cls, value: dict[str, Any]) -> PlanItem:
        evidence = value.get("evidence") or {}
        memory = value.get("memory")
        return cls(
            user_id=str(value["userId"]),
            display_name=str(value.get("displayName") or ""),
            user_principal_name=str(value.get("userPrincipalName") or ""),
            mail=str(value.get("mail") or ""),
            home_domain=sys.intern(str(value.get("homeDomain") or "")),
            account_enabled=value.get("accountEnabled"),
            action=Action(str(value["action"])),
            reason=str(value.get("reason") or ""),
            scope=str(value.get("scope") or ""),
            evidence_items=_compact(dict(evidence)),
            enable=bool(value.get("reEnable", False)),
            restart_clock=bool(value.get("restartClock", False)),
            memory=StageMemory.from_json(memory) if isinstance(memory, dict) else None,
            outcome=str(value.get("outcome") or "planned"),
        )


def part_name(piece: int, attempt: int, page: int) -> str:
    """The report-store part holding one page of a run's plan: piece (scan range) / attempt / page."""
    return f"plan-r{piece:03d}-a{attempt}-p{page:05d}.json"


@dataclass(slots=True)
class StalePlan:
    run_id: str
    started: datetime
    dry_run: bool
    status: str = "planned"
    """planned (reading or acting, not finished) | dry-run | capped | aborted | applied | incomplete"""
    message: str = ""
    guests_seen: int = 0
    guests_without_activity: int = 0
    accepted_guests: int = 0
    """Guests who redeemed their invitation: the ones a missing signInActivity is judged against."""
    accepted_without_activity: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    """Per decision: keep, skip:<reason>, warn, disable, delete, reactivate."""
    per_domain: dict[str, Counter[str]] = field(default_factory=dict)
    invitation: Counter[str] = field(default_factory=Counter)
    """Guests per invitation state (shared.domain.census.invitation_state): the dashboard's census."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Per outcome of the items acted on (done, already-done, held, failed, would-do, not-done)."""
    parts: list[str] = field(default_factory=list)
    """The report-store parts that hold the plan's items, in order (see part_name)."""
    reports: list[str] = field(default_factory=list)
    slices: int = 1
    """How many invocations the run took (a run cut off is continued by the next one)."""
    licences_to_reclaim: int = 0
    """Licences (direct SKUs and licensing-group memberships) the run's disables take back."""
    reinvites: int = 0
    """Never-redeemed invitations the run's warnings re-send (STALE_REINVITE_PENDING; shared.domain.reinvite)."""

    @property
    def acting(self) -> int:
        return sum(self.counts[str(action)] for action in ACTING)

    @property
    def items_planned(self) -> int:
        """Guests acted on (or that would be): every decision that is not keep or skip."""
        return sum(n for label, n in self.counts.items() if label != "keep" and not label.startswith("skip:"))

    @property
    def not_done(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome in ("held", "planned") or "failed" in outcome)

    def tally(self) -> dict[str, Any]:
        """The counts (not the items) as JSON: what a page adds to its run, kept with the page's part."""
        return {
            "guestsSeen": self.guests_seen,
            "guestsWithoutSignInActivity": self.guests_without_activity,
            "acceptedGuests": self.accepted_guests,
            "acceptedWithoutSignInActivity": self.accepted_without_activity,
            "counts": dict(self.counts),
            "perDomain": {domain: dict(counts) for domain, counts in self.per_domain.items()},
            "invitation": dict(self.invitation),
            "licencesToReclaim": self.licences_to_reclaim,
            "reinvites": self.reinvites,
        }

    def absorb(self, tally: dict[str, Any]) -> None:
        """Add a page's tally (from `tally()`) to this run's counts."""
        self.guests_seen += int(tally.get("guestsSeen", 0))
        self.guests_without_activity += int(tally.get("guestsWithoutSignInActivity", 0))
        self.accepted_guests += int(tally.get("acceptedGuests", 0))
        self.accepted_without_activity += int(tally.get("acceptedWithoutSignInActivity", 0))
        self.counts.update({str(k): int(v) for k, v in (tally.get("counts") or {}).items()})
        self.licences_to_reclaim += int(tally.get("licencesToReclaim", 0))
        self.reinvites += int(tally.get("reinvites", 0))
        self.invitation.update({str(k): int(v) for k, v in (tally.get("invitation") or {}).items()})
        for domain, counts in (tally.get("perDomain") or {}).items():
            self.per_domain.setdefault(sys.intern(str(domain)), Counter()).update(
                {str(k): int(v) for k, v in counts.items()}
            )

    def summary(self) -> RunSummary:
        """What the dashboard shows of the run (shared.domain.census)."""
        return RunSummary(self.run_id, self.started, self.dry_run, self.status, self.message, dict(self.outcomes))

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary().to_json(),
            "guestsSeen": self.guests_seen,
            "guestsWithoutSignInActivity": self.guests_without_activity,
            "acceptedGuestsWithoutSignInActivity": self.accepted_without_activity,
            "counts": dict(sorted(self.counts.items())),
            "perDomain": {d: dict(sorted(c.items())) for d, c in sorted(self.per_domain.items())},
            "outcomes": dict(sorted(self.outcomes.items())),
            "licencesToReclaim": self.licences_to_reclaim,
            "reinvites": self.reinvites,
            "slices": self.slices,
            "reports": self.reports,
        }


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def add_to_plan(
    plan: StalePlan,
    user: DirectoryUser,
    memory: StageMemory | None,
    now: datetime,
    policy: StalePolicy,
    excluded: bool,
) -> PlanItem | None:
    """Decide one user (shared.domain.stale.decide) and count it in `plan`; the item if it is acted on."""
    decision = decide(user, memory, now, policy, member_of_excluded_group=excluded)
    if not user.is_guest:
        plan.counts[f"skip:{decision.reason}"] += 1
        return None
    plan.guests_seen += 1
    if user.has_joined:
        plan.accepted_guests += 1
    plan.invitation[invitation_state(user.external_user_state, user.creation_type == SELF_SERVICE_SIGN_UP)] += 1
    if user.sign_in_activity is None:
        plan.guests_without_activity += 1
        plan.accepted_without_activity += user.has_joined
    label = str(decision.action) if decision.action not in (Action.SKIP,) else f"skip:{decision.reason}"
    plan.counts[label] += 1
    domain = user.home_domain or "(unknown)"
    plan.per_domain.setdefault(domain, Counter())[str(decision.action)] += 1
    if decision.action in (Action.KEEP, Action.SKIP):
        return None
    evidence = dict(decision.evidence)
    if decision.due:
        evidence["due"] = decision.due.isoformat()
    if decision.action is Action.DISABLE and (reclaim := reclaim_of(user, policy)):
        evidence["reclaim"] = reclaim.to_json()
        plan.licences_to_reclaim += reclaim.count
    if reinvite := plan_reinvite(decision.action, evidence, user.mail, policy.reinvite_pending):
        evidence[REINVITE_EVIDENCE] = str(reinvite)
        plan.reinvites += reinvite is ReinviteState.PLANNED
    return PlanItem(
        user_id=user.id,
        display_name=user.display_name or "",
        user_principal_name=user.user_principal_name or "",
        mail=user.mail or "",
        home_domain=sys.intern(domain),
        account_enabled=user.account_enabled,
        action=decision.action,
        reason=decision.reason,
        scope=decision.scope,
        evidence_items=_compact(evidence),
        enable=decision.enable,
        restart_clock=decision.restart_clock,
        memory=memory,
    )


_EVIDENCE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _compact(evidence: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    keys = tuple(evidence)
    return _EVIDENCE_KEYS.setdefault(keys, keys), tuple(evidence.values())


def check_data(plan: StalePlan, abort_missing_activity_percent: float) -> None:
    """A tenant without Entra ID P1/P2 or an app without AuditLog.Read.All gets a 403 (the service aborts on
    it), not empty activity: a null signInActivity means "never signed in" (or not since April 2020). Pending
    invitations are expected to have none, so only guests who redeemed count; a large share of them without any
    activity is data that looks wrong, and the run stops before acting on it."""
    if plan.accepted_guests == 0:
        return
    missing = 100.0 * plan.accepted_without_activity / plan.accepted_guests
    if missing > abort_missing_activity_percent:
        plan.status = "aborted"
        plan.message = (
            f"{plan.accepted_without_activity} of the {plan.accepted_guests} guests who redeemed their invitation "
            f"({missing:.0f}%) have no signInActivity at all (more than STALE_ABORT_MISSING_ACTIVITY_PERCENT="
            f"{abort_missing_activity_percent:g}%). Graph served signInActivity (no 403), so this is not a "
            "missing licence or permission: check the sample in the report, then raise the setting if these "
            "guests really never signed in. Nothing was changed."
        )


def check_exclusion_group(plan: StalePlan, group_id: str, members_read: int, max_members: int) -> bool:
    """An exclusion group is read whole (nested groups' members included) before anyone is judged: a guest
    judged without it could be disabled while excluded. A group past `max_members` is most likely the wrong
    group (all users, a dynamic group of every guest), and reading it would page for a long time: the run stops
    at the first page past the cap, before acting. False (and the plan `aborted`) when the group is too large."""
    if members_read <= max_members:
        return True
    plan.status = "aborted"
    plan.message = (
        f"Exclusion group {group_id} has more than {max_members} members: {members_read} read so far, nested "
        f"groups' members included (STALE_EXCLUDE_GROUP_MAX_MEMBERS={max_members}). Reading stopped there, so "
        "who is excluded is not known and nobody was judged. Nothing was changed: check that "
        "STALE_EXCLUDE_GROUP_IDS names the group you meant, or raise STALE_EXCLUDE_GROUP_MAX_MEMBERS."
    )
    return False


def check_caps(plan: StalePlan, max_actions: int, max_percent: float) -> None:
    """Cap the run: more than `max_actions` guests, or `max_percent` of those seen, warned, disabled or deleted
    makes it `capped` (the plan is still reported, for review)."""
    by_percent = math.floor(plan.guests_seen * max_percent / 100.0)
    limit = min(max_actions, by_percent)
    if plan.acting > limit:
        plan.status = "capped"
        plan.message = (
            f"The plan would warn, disable or delete {plan.acting} of {plan.guests_seen} guests, more than the cap "
            f"of {limit} (STALE_MAX_ACTIONS={max_actions}, STALE_MAX_PERCENT={max_percent:g}%). "
            "Nothing was changed: review the plan, then raise the caps or fix the exclusions."
        )


def memory_after(
    item: PlanItem, action: Action, now: datetime, run_id: str, reclaimed: Reclaim | None = None
) -> StageMemory | None:
    """What we remember of a guest once `action` was done to it (a disable: with the licences it took back);
    None: forget the episode."""
    name = item.display_name or item.user_principal_name
    if action is Action.WARN:
        return StageMemory(Stage.WARNED, now, run_id=run_id, episode=item.scope, name=name)
    episode = item.memory.episode_id if item.memory else ""
    if action is Action.DISABLE:
        we_disabled = item.account_enabled is not False
        return StageMemory(Stage.DISABLED, now, we_disabled, run_id, episode, reclaimed=reclaimed, name=name)
    if action is Action.DELETE:
        we_disabled = item.memory.we_disabled if item.memory else False
        kept = item.memory.reclaimed if item.memory else None
        return StageMemory(Stage.DELETED, now, we_disabled, run_id, episode, reclaimed=kept, name=name)
    if item.restart_clock:
        return StageMemory(Stage.RESTORED, now, run_id=run_id, name=name)
    return None  # active again: forget the episode
