"""The stale-guest lifecycle as a pure decision: keep, skip, warn, disable, delete or reactivate one guest.

Admins' complaints about cleanup scripts are the spec: read every sign-in kind (interactive alone disables
people who only use apps), judge guests who never signed in from when they accepted or were invited instead of
ignoring or deleting them, never let a never-redeemed invitation linger, warn before acting, honour exclusions,
and never touch a member (a `#EXT#` UPN does not make a guest).

Where a guest stands in the lifecycle (when we warned or disabled it) is not in the directory: it is our own
memory (`StageMemory`, kept by the service in state records). `decide` takes the guest, that memory, the time
and the policy and returns a `StaleDecision` with a reason and the evidence it rested on; it does no I/O.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.domain.directory import DirectoryUser

RESTORE_WINDOW = timedelta(days=30)
"""Deleted users stay in deletedItems, restorable, for 30 days (GRAPH-FACTS: directory deleted items)."""


class Stage(enum.StrEnum):
    """Where a guest stands in our lifecycle (our memory, not a directory property)."""

    WARNED = "warned"
    DISABLED = "disabled"
    DELETED = "deleted"
    RESTORED = "restored"
    """An operator restored or re-enabled it: the inactivity clock restarts at `since`."""
    KEPT = "kept"
    """A sponsor kept it through an attestation link (shared.domain.attestation): nothing happens to it before
    `until`; then it is judged again, with `since` counting as activity."""


class Action(enum.StrEnum):
    KEEP = "keep"
    """Nothing to do now (active, or waiting out a grace period)."""
    SKIP = "skip"
    """Never acted on: not a guest, excluded, too new, or not judgeable."""
    WARN = "warn"
    DISABLE = "disable"
    DELETE = "delete"
    REACTIVATE = "reactivate"
    """Active (or excluded, or re-enabled by an admin) again while warned or disabled: back to normal."""


ACTING = frozenset({Action.WARN, Action.DISABLE, Action.DELETE})
"""The actions that take something away; caps count these."""

ACT_ORDER = (Action.REACTIVATE, Action.DELETE, Action.DISABLE, Action.WARN)
"""The order a run acts in (and reports): good news first, then what ends an episode, then what starts one."""


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Licences taken from a guest when it is disabled (STALE_RECLAIM_LICENSES): its directly assigned SKUs and
    its membership of the licensing group (LICENSE_GROUP_ID). Recorded, so a return gives them back."""

    sku_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sku_ids or self.group_ids)

    @property
    def count(self) -> int:
        return len(self.sku_ids) + len(self.group_ids)

    def to_json(self) -> dict[str, Any]:
        return {"skus": list(self.sku_ids), "groups": list(self.group_ids)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Reclaim:
        return cls(tuple(str(s) for s in value.get("skus") or ()), tuple(str(g) for g in value.get("groups") or ()))


def reclaim_of(user: DirectoryUser, policy: StalePolicy) -> Reclaim:
    """What disabling `user` takes back under `policy` (nothing when reclaiming is off)."""
    if not policy.reclaim_licenses:
        return Reclaim()
    groups = (policy.licensing_group_id,) if policy.licensing_group_id in user.licensing_group_ids else ()
    return Reclaim(tuple(sorted(user.direct_sku_ids or ())), tuple(g for g in groups if g))


@dataclass(frozen=True, slots=True)
class StageMemory:
    """What we recorded about a guest: its stage, since when, and whether WE disabled the account."""

    stage: Stage
    since: datetime
    we_disabled: bool = False
    run_id: str = ""
    episode: str = ""
    """The lifecycle episode (warning -> disable -> delete) this stage belongs to: the warning's scope, carried
    by the stages after it. Attestation links name it (an answer counts once per episode)."""
    until: datetime | None = None
    """KEPT only: the end of the sponsor's extension."""
    reclaimed: Reclaim | None = None
    """DISABLED/DELETED: the licences taken back when we disabled the account (given back on return)."""
    name: str = ""
    """The guest's display name (or UPN) when the sweep acted: the dashboard searches guests by it. Carried over by
    every later stage (shared.services.census.write_stage); decisions never read it."""

    @property
    def episode_id(self) -> str:
        """The episode, or for a warning recorded before episodes were (guestwarden < 0.17) one from its date."""
        if self.episode:
            return self.episode
        return f"warned:{self.since.isoformat()}" if self.stage is Stage.WARNED else ""

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "stage": str(self.stage),
            "since": self.since.isoformat(),
            "weDisabled": self.we_disabled,
            "runId": self.run_id,
        }
        if self.episode:
            value["episode"] = self.episode
        if self.until is not None:
            value["until"] = self.until.isoformat()
        if self.reclaimed:
            value["reclaimed"] = self.reclaimed.to_json()
        if self.name:
            value["name"] = self.name
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StageMemory:
        return cls(
            stage=Stage(str(value["stage"])),
            since=datetime.fromisoformat(str(value["since"])),
            we_disabled=bool(value.get("weDisabled", False)),
            run_id=str(value.get("runId", "")),
            episode=str(value.get("episode", "")),
            until=datetime.fromisoformat(str(value["until"])) if value.get("until") else None,
            reclaimed=Reclaim.from_json(value["reclaimed"]) if isinstance(value.get("reclaimed"), dict) else None,
            name=str(value.get("name") or ""),
        )


@dataclass(frozen=True, slots=True)
class StalePolicy:
    """Thresholds and exclusions (from STALE_* settings). Days are whole days; a boundary day counts as due."""

    inactive_days: int = 90
    pending_days: int = 30
    warn_grace_days: int = 14
    delete_grace_days: int = 30
    new_guest_grace_days: int = 14
    exclude_group_ids: frozenset[str] = frozenset()
    exclude_domains: frozenset[str] = frozenset()
    exclude_upn_patterns: tuple[str, ...] = ()
    reclaim_licenses: bool = False
    """Take a disabled guest's direct licences (and licensing-group membership) back; give them back on return."""
    licensing_group_id: str | None = None
    reinvite_pending: bool = False
    """Re-send a never-redeemed invitation once when its guest is warned (STALE_REINVITE_PENDING;
    shared.domain.reinvite)."""

    def upn_excluded(self, upn: str | None) -> str | None:
        """The first pattern (fnmatch, case-insensitive) matching the UPN, if any."""
        lowered = (upn or "").lower()
        return next((p for p in self.exclude_upn_patterns if fnmatch.fnmatchcase(lowered, p.lower())), None)


@dataclass(frozen=True, slots=True)
class StaleDecision:
    action: Action
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    enable: bool = False
    """REACTIVATE only: re-enable the account (we disabled it and it is still disabled)."""
    scope: str = ""
    """Names this step of this guest's lifecycle episode (the idempotency ledger's scope): the same on a rerun
    of an interrupted sweep, different for the next episode."""
    due: datetime | None = None
    """KEEP in a grace period: when the next stage falls due."""
    restart_clock: bool = False
    """REACTIVATE only: remember the moment as a restore (an operator's decision), so the guest gets a full
    inactivity window before it is warned again."""


@dataclass(frozen=True, slots=True)
class Inactivity:
    """How long a guest has been inactive, and what that rests on."""

    basis: str
    """activity | accepted-never-signed-in | invitation-pending | restored | kept-by-sponsor | unknown"""
    since: datetime | None
    threshold_days: int


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def inactivity(user: DirectoryUser, memory: StageMemory | None, policy: StalePolicy) -> Inactivity:
    """Last activity = the latest of the three signInActivity stamps; without any, the acceptance (or invitation)
    date; a pending invitation is judged by its own, shorter threshold. A restore by an operator counts as
    activity so that a restored guest gets a full inactivity window."""
    restored = memory.since if memory and memory.stage is Stage.RESTORED else None
    activity = user.sign_in_activity.latest if user.sign_in_activity else None
    if user.external_user_state == "PendingAcceptance" and activity is None:
        invited = user.external_user_state_changed or user.created
        if memory is not None and memory.stage in (Stage.WARNED, Stage.DISABLED) and invited is not None:
            # Still the same unredeemed invitation, perhaps sent again with the warning (our re-invite, or an
            # admin's resend). Whether Graph moves externalUserStateChangeDateTime on a resend is not documented:
            # if it does, the episode must not restart on it. When warned, the invitation was at least
            # STALE_PENDING_DAYS old; it stays at least that old.
            invited = min(invited, memory.since - timedelta(days=policy.pending_days))
        basis, since, threshold = "invitation-pending", invited, policy.pending_days
    elif activity is not None:
        basis, since, threshold = "activity", activity, policy.inactive_days
    else:
        accepted = user.external_user_state_changed or user.created
        basis, since, threshold = "accepted-never-signed-in", accepted, policy.inactive_days
    if restored is not None and (since is None or restored > since):
        return Inactivity("restored", restored, policy.inactive_days)
    if memory is not None and memory.stage is Stage.KEPT and (since is None or memory.since > since):
        # A sponsor's "keep" counts as activity, for the days the sponsor gave (at least one).
        days = max(1, math.ceil((memory.until - memory.since) / timedelta(days=1))) if memory.until else 1
        return Inactivity("kept-by-sponsor", memory.since, days)
    if since is None:
        return Inactivity("unknown", None, threshold)
    return Inactivity(basis, since, threshold)


def _evidence(user: DirectoryUser, memory: StageMemory | None, how: Inactivity, now: datetime) -> dict[str, Any]:
    activity = user.sign_in_activity
    return {
        "lastSignIn": _iso(activity.last_sign_in) if activity else None,
        "lastNonInteractiveSignIn": _iso(activity.last_non_interactive_sign_in) if activity else None,
        "lastSuccessfulSignIn": _iso(activity.last_successful_sign_in) if activity else None,
        "signInActivity": activity is not None,
        "externalUserState": user.external_user_state,
        "externalUserStateChanged": _iso(user.external_user_state_changed),
        "created": _iso(user.created),
        "accountEnabled": user.account_enabled,
        "basis": how.basis,
        "inactiveSince": _iso(how.since),
        "inactiveDays": (now - how.since).days if how.since else None,
        "thresholdDays": how.threshold_days,
        "stage": str(memory.stage) if memory else None,
        "stageSince": _iso(memory.since) if memory else None,
    }


def _exclusion(user: DirectoryUser, policy: StalePolicy, member_of_excluded_group: bool) -> str | None:
    if member_of_excluded_group:
        return "excluded-by-group"
    if user.home_domain and user.home_domain in policy.exclude_domains:
        return "excluded-by-domain"
    if policy.upn_excluded(user.user_principal_name):
        return "excluded-by-upn-pattern"
    return None


def decide(
    user: DirectoryUser,
    memory: StageMemory | None,
    now: datetime,
    policy: StalePolicy,
    *,
    member_of_excluded_group: bool = False,
) -> StaleDecision:
    """What to do with this user tonight, why, and on what evidence."""
    if not user.is_guest:
        return StaleDecision(Action.SKIP, "not-a-guest", {"userType": user.user_type})
    how = inactivity(user, memory, policy)
    evidence = _evidence(user, memory, how, now)
    in_lifecycle = memory is not None and memory.stage in (Stage.WARNED, Stage.DISABLED)

    excluded = _exclusion(user, policy, member_of_excluded_group)
    if excluded:
        evidence["exclusion"] = excluded
        if in_lifecycle:
            return _reactivate(user, memory, excluded, evidence)
        return StaleDecision(Action.SKIP, excluded, evidence)

    if memory is not None and memory.stage is Stage.DISABLED and user.account_enabled:
        # Someone re-enabled the account we disabled: an operator's decision, not ours to override.
        return _reactivate(user, memory, "re-enabled-outside-guestwarden", evidence, restart_clock=True)
    if memory is not None and memory.stage is Stage.DELETED:
        # We deleted it and it is listed again: someone restored it from the recycle bin.
        return _reactivate(user, memory, "restored-outside-guestwarden", evidence, restart_clock=True)

    if user.created is not None and now - user.created < timedelta(days=policy.new_guest_grace_days):
        if in_lifecycle:
            return _reactivate(user, memory, "new-guest", evidence)
        return StaleDecision(Action.SKIP, "new-guest", evidence)

    if how.since is None:
        return StaleDecision(Action.SKIP, "no-date-to-judge-by", evidence)

    stale = now - how.since >= timedelta(days=how.threshold_days)
    if not stale:
        if in_lifecycle:
            return _reactivate(user, memory, "active-again", evidence)
        if how.basis == "kept-by-sponsor":
            return StaleDecision(
                Action.KEEP, "kept-by-sponsor", evidence, due=how.since + timedelta(days=how.threshold_days)
            )
        return StaleDecision(Action.KEEP, "active", evidence)
    return _next_stage(user, memory, how, now, policy, evidence)


def _reactivate(
    user: DirectoryUser,
    memory: StageMemory | None,
    reason: str,
    evidence: dict[str, Any],
    *,
    restart_clock: bool = False,
) -> StaleDecision:
    assert memory is not None
    we_disabled_it = memory.stage in (Stage.DISABLED, Stage.DELETED) and memory.we_disabled
    enable = we_disabled_it and user.account_enabled is False
    scope = f"{memory.stage}:{memory.since.isoformat()}"
    return StaleDecision(Action.REACTIVATE, reason, evidence, enable=enable, scope=scope, restart_clock=restart_clock)


def _next_stage(
    user: DirectoryUser,
    memory: StageMemory | None,
    how: Inactivity,
    now: datetime,
    policy: StalePolicy,
    evidence: dict[str, Any],
) -> StaleDecision:
    assert how.since is not None
    reason = {"invitation-pending": "invitation-not-redeemed", "accepted-never-signed-in": "never-signed-in"}.get(
        how.basis, "inactive"
    )
    if memory is None or memory.stage in (Stage.RESTORED, Stage.KEPT):
        return StaleDecision(Action.WARN, reason, evidence, scope=f"inactive-since:{how.since.isoformat()}")
    if memory.stage is Stage.WARNED:
        due = memory.since + timedelta(days=policy.warn_grace_days)
        if now < due:
            return StaleDecision(Action.KEEP, "in-warning-grace", evidence, due=due)
        return StaleDecision(Action.DISABLE, reason, evidence, scope=f"warned:{memory.since.isoformat()}")
    if memory.stage is Stage.DISABLED:
        due = memory.since + timedelta(days=policy.delete_grace_days)
        if now < due:
            return StaleDecision(Action.KEEP, "in-disabled-grace", evidence, due=due)
        return StaleDecision(Action.DELETE, reason, evidence, scope=f"disabled:{memory.since.isoformat()}")
    raise AssertionError(f"unhandled stage {memory.stage}")  # pragma: no cover - DELETED handled in decide
