"""Guest posture: what the source documents tell an admin to get right around guests, judged from what Graph
says. Pure: each judge takes what was read (or `Unavailable` when the read was refused) and returns a Check with
its status, the evidence, and the fix in the admin's words with the Entra admin center path.

Sources: seed 004 (Entra B2B guide: steps 1, 6, 8 and "Things that bite people"), seed 000 (Identity
Protection and B2B users: "How do I prevent B2B collaboration users from being impacted by risk-based
policies"), and Microsoft Graph's resource pages cited at each constant.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.directory import DirectoryUser, SubscribedSku


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


_RANK = {Status.PASS: 0, Status.UNKNOWN: 1, Status.WARN: 2, Status.FAIL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default=Status.PASS)


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A read that could not be made, and why (a missing permission, no Entra ID P1, Graph unavailable)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    title: str
    status: Status
    summary: str
    evidence: tuple[str, ...] = ()
    fix: str = ""
    portal: str = ""
    """Where the admin changes it (Microsoft Entra admin center path)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.key,
            "title": self.title,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fix": self.fix,
            "portal": self.portal,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Check:
        return cls(
            key=str(value.get("check", "")),
            title=str(value.get("title", "")),
            status=Status(str(value.get("status", "unknown"))),
            summary=str(value.get("summary", "")),
            evidence=tuple(str(e) for e in value.get("evidence", ()) or ()),
            fix=str(value.get("fix", "")),
            portal=str(value.get("portal", "")),
        )


@dataclass(frozen=True, slots=True)
class PostureReport:
    generated: datetime
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for c in self.checks if c.status == s) for s in Status}

    def as_json(self) -> dict[str, Any]:
        return {
            "generated": self.generated.isoformat(),
            "status": self.status.value,
            "counts": self.counts(),
            "checks": [c.as_json() for c in self.checks],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PostureReport:
        return cls(
            generated=datetime.fromisoformat(str(value["generated"])),
            checks=tuple(Check.from_json(c) for c in value.get("checks", ()) if isinstance(c, Mapping)),
        )


# --- what is read --------------------------------------------------------------------------------------------
EXTERNAL_COLLABORATION = "Entra admin center > Identity > External Identities > External collaboration settings"
CONDITIONAL_ACCESS = "Entra admin center > Protection > Conditional Access > Policies"
ROLES = "Entra admin center > Identity > Roles & admins > Guest Inviter > Assignments"
LICENCES = "Microsoft 365 admin center > Billing > Licenses (Entra ID P1 or P2)"
USERS = "Entra admin center > Identity > Users > All users (filter: User type = Guest)"

GUEST_INVITER_ROLE = "95e79109-95c0-4d8e-aee3-d01accf2d47b"
"""The Guest Inviter built-in role's template id (= its roleDefinitionId; entra-docs permissions-reference)."""

GUEST_ROLE_MEMBER = "a0b1b346-4d3e-4e8b-98f8-753987be4970"
GUEST_ROLE_DEFAULT = "10dae51f-b6af-4016-8d66-8c2a99b929b3"
GUEST_ROLE_RESTRICTED = "2af84b1e-32c8-42b7-82bc-daa82404023b"
"""authorizationpolicy.md, guestUserRoleId: User (same access as members), Guest User (limited, the default),
Restricted Guest User (the most restrictive)."""

PREMIUM_PLANS = {
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d": "Entra ID P1 (AAD_PREMIUM)",
    "eec0eb4f-6444-4f95-aba0-50c24d67f998": "Entra ID P2 (AAD_PREMIUM_P2)",
}
"""Service plans that bring Conditional Access and signInActivity (subscribedSku.servicePlans)."""

B2B_GUEST = "b2bCollaborationGuest"
"""conditionalaccessguestsorexternalusers.md: the guest type of an invited B2B collaboration guest."""


@dataclass(frozen=True, slots=True)
class AuthorizationSettings:
    allow_invites_from: str | None
    guest_user_role_id: str | None


@dataclass(frozen=True, slots=True)
class RoleHolder:
    id: str
    display_name: str | None = None
    kind: str = "user"
    """user, group or servicePrincipal (the principal's @odata.type)."""
    user_principal_name: str | None = None
    user_type: str | None = None

    def label(self) -> str:
        name = self.display_name or self.user_principal_name or self.id
        extra = f", {self.user_principal_name}" if self.user_principal_name and self.display_name else ""
        kind = "guest" if self.user_type == "Guest" else self.kind
        return f"{name} ({kind}{extra})"


@dataclass(frozen=True, slots=True)
class CaPolicy:
    """A Conditional Access policy, with what the checks look at (conditionalaccesspolicy.md)."""

    id: str
    name: str
    state: str
    """enabled, disabled, or enabledForReportingButNotEnforced (report-only)."""
    include_users: frozenset[str] = frozenset()
    exclude_users: frozenset[str] = frozenset()
    include_groups: frozenset[str] = frozenset()
    exclude_groups: frozenset[str] = frozenset()
    include_roles: frozenset[str] = frozenset()
    include_guest_types: frozenset[str] = frozenset()
    exclude_guest_types: frozenset[str] = frozenset()
    include_apps: frozenset[str] = frozenset()
    exclude_apps: frozenset[str] = frozenset()
    controls: frozenset[str] = frozenset()
    authentication_strength: str | None = None
    strength_read: bool = True
    """False when the answer had no grantControls.authenticationStrength at all (Graph may leave the relationship
    out of a list: the simulator plays both): the policy may require a strength we cannot see."""
    user_risk_levels: tuple[str, ...] = ()
    sign_in_risk_levels: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.state == "enabled"

    @property
    def report_only(self) -> bool:
        return self.state == "enabledForReportingButNotEnforced"

    @property
    def active(self) -> bool:
        return self.enabled or self.report_only

    def reaches_guests(self, guest_group_id: str | None = None) -> bool:
        """B2B guests are in scope: all users, or guests/external users chosen (as a flag or by type), and not
        excluded as a type, as `GuestsOrExternalUsers`, or through the tenant's all-guests group."""
        included = (
            "All" in self.include_users or "GuestsOrExternalUsers" in self.include_users or self._guest_type_in(True)
        )
        return included and not self.excludes_guests(guest_group_id)

    def excludes_guests(self, guest_group_id: str | None = None) -> bool:
        return (
            "GuestsOrExternalUsers" in self.exclude_users
            or self._guest_type_in(False)
            or (guest_group_id is not None and guest_group_id in self.exclude_groups)
        )

    def _guest_type_in(self, include: bool) -> bool:
        return B2B_GUEST in (self.include_guest_types if include else self.exclude_guest_types)

    @property
    def all_apps(self) -> bool:
        return "All" in self.include_apps

    @property
    def requires_mfa(self) -> bool:
        return "mfa" in self.controls or self.authentication_strength is not None

    @property
    def grant_unseen(self) -> bool:
        """No built-in control and no authentication strength in the answer, which may have left it out."""
        return not self.controls and not self.strength_read

    @property
    def risk_based(self) -> bool:
        return bool(self.user_risk_levels or self.sign_in_risk_levels)

    def describe(self) -> str:
        state = {"enabledForReportingButNotEnforced": "report-only"}.get(self.state, self.state)
        grant = sorted(self.controls)
        if self.authentication_strength:
            grant.append(f"strength: {self.authentication_strength}")
        apps = "all cloud apps" if self.all_apps else ", ".join(sorted(self.include_apps)) or "no apps"
        if self.exclude_apps:
            apps += f" except {len(self.exclude_apps)} excluded"
        risk = []
        if self.user_risk_levels:
            risk.append("user risk " + "/".join(self.user_risk_levels))
        if self.sign_in_risk_levels:
            risk.append("sign-in risk " + "/".join(self.sign_in_risk_levels))
        bits = [state, apps, "grant: " + (", ".join(grant) or "not returned"), *risk]
        return f"{self.name!r}: " + "; ".join(bits)


@dataclass(frozen=True, slots=True)
class RiskFlow:
    """Whether guestwarden's own risk flow (flows 2/3) is running: its poller's last watermark."""

    last_poll: datetime | None
    now: datetime

    @property
    def on(self) -> bool:
        return self.last_poll is not None and self.now - self.last_poll <= timedelta(days=1)

    def describe(self) -> str:
        if self.last_poll is None:
            return "guestwarden's risk flow is off (its sign-in poller has never run)"
        if self.on:
            return (
                f"guestwarden's risk flow is on (last poll {self.last_poll:%Y-%m-%d %H:%M} UTC): blocked guests "
                "are told how to fix it at home"
            )
        return f"guestwarden's risk flow has stopped (last poll {self.last_poll:%Y-%m-%d %H:%M} UTC)"


@dataclass(frozen=True, slots=True)
class BlockedGuests:
    """Guests whose sign-ins were blocked by risk at their home tenant (53011/530032) in a window."""

    days: int
    guests: int
    sign_ins: int
    domains: tuple[str, ...] = ()


# --- the judges ---------------------------------------------------------------------------------------------
def _unknown(key: str, title: str, reason: str, portal: str) -> Check:
    return Check(
        key,
        title,
        Status.UNKNOWN,
        f"could not be read: {reason}",
        (),
        "grant the permission named, or check it by hand at the path shown",
        portal,
    )


INVITES = "invites"
INVITES_TITLE = "Who can invite guests"


def check_invites(policy: AuthorizationSettings | Unavailable, holders: Sequence[RoleHolder] | Unavailable) -> Check:
    """Seed 004, steps 1 and 8: the default lets anyone, guests included, invite guests."""
    if isinstance(policy, Unavailable):
        return _unknown(INVITES, INVITES_TITLE, policy.reason, EXTERNAL_COLLABORATION)
    setting = policy.allow_invites_from or "(not returned)"
    evidence = [f"authorizationPolicy.allowInvitesFrom = {setting}"]
    if isinstance(holders, Unavailable):
        evidence.append(f"Guest Inviter holders: unknown ({holders.reason})")
        guest_holders: list[RoleHolder] = []
    else:
        names = ", ".join(h.label() for h in holders) or "nobody"
        evidence.append(f"Guest Inviter holders ({len(holders)}): {names}")
        guest_holders = [h for h in holders if h.user_type == "Guest"]
    fix_setting = (
        "choose 'Only users assigned to specific admin roles can invite guest users' (Global Admin, User Admin, "
        "Guest Inviter), then give the Guest Inviter role to the people who invite partners (with P1/P2, to a group)"
    )
    if setting == "everyone":
        return Check(
            INVITES,
            INVITES_TITLE,
            Status.FAIL,
            "anyone, guests included, can invite guests: guests invite guests, unbounded",
            tuple(evidence),
            fix_setting,
            EXTERNAL_COLLABORATION,
        )
    if guest_holders:
        return Check(
            INVITES,
            INVITES_TITLE,
            Status.FAIL,
            f"{len(guest_holders)} guest(s) hold Guest Inviter: guests can invite guests",
            tuple(evidence),
            "remove the Guest Inviter role from guests",
            ROLES,
        )
    if setting == "adminsGuestInvitersAndAllMembers":
        return Check(
            INVITES,
            INVITES_TITLE,
            Status.WARN,
            "every member can invite guests (guests cannot)",
            tuple(evidence),
            fix_setting,
            EXTERNAL_COLLABORATION,
        )
    if setting == "adminsAndGuestInviters":
        return Check(
            INVITES,
            INVITES_TITLE,
            Status.PASS,
            "only admins and Guest Inviter holders can invite guests",
            tuple(evidence),
            "",
            EXTERNAL_COLLABORATION,
        )
    if setting == "none":
        return Check(
            INVITES,
            INVITES_TITLE,
            Status.PASS,
            "nobody can invite guests (B2B invitations are off)",
            tuple(evidence),
            "",
            EXTERNAL_COLLABORATION,
        )
    return Check(
        INVITES,
        INVITES_TITLE,
        Status.UNKNOWN,
        f"unrecognised setting {setting!r}",
        tuple(evidence),
        "check the setting by hand",
        EXTERNAL_COLLABORATION,
    )


GUEST_ACCESS = "guest-access"
GUEST_ACCESS_TITLE = "Guest user access restrictions"


def check_guest_access(policy: AuthorizationSettings | Unavailable) -> Check:
    if isinstance(policy, Unavailable):
        return _unknown(GUEST_ACCESS, GUEST_ACCESS_TITLE, policy.reason, EXTERNAL_COLLABORATION)
    role = (policy.guest_user_role_id or "").lower()
    evidence = (f"authorizationPolicy.guestUserRoleId = {policy.guest_user_role_id or '(not returned)'}",)
    fix = "choose 'Guest user access is restricted to properties and memberships of their own directory objects'"
    if role == GUEST_ROLE_RESTRICTED:
        return Check(
            GUEST_ACCESS,
            GUEST_ACCESS_TITLE,
            Status.PASS,
            "most restrictive: guests see only their own directory objects",
            evidence,
            "",
            EXTERNAL_COLLABORATION,
        )
    if role == GUEST_ROLE_DEFAULT:
        return Check(
            GUEST_ACCESS,
            GUEST_ACCESS_TITLE,
            Status.WARN,
            "the default limited access: guests can read the properties of users and groups they can see",
            evidence,
            fix,
            EXTERNAL_COLLABORATION,
        )
    if role == GUEST_ROLE_MEMBER:
        return Check(
            GUEST_ACCESS,
            GUEST_ACCESS_TITLE,
            Status.FAIL,
            "guests have the same access as members: they can browse the whole directory",
            evidence,
            fix,
            EXTERNAL_COLLABORATION,
        )
    return Check(
        GUEST_ACCESS,
        GUEST_ACCESS_TITLE,
        Status.UNKNOWN,
        "unrecognised guest role",
        evidence,
        "check the setting by hand",
        EXTERNAL_COLLABORATION,
    )


PREMIUM = "premium"
PREMIUM_TITLE = "Entra ID P1/P2"


@dataclass(frozen=True, slots=True)
class Premium:
    """What subscribedSkus says about Entra ID P1/P2."""

    skus: tuple[str, ...]
    """Part numbers of enabled SKUs carrying a P1/P2 plan that is provisioned."""
    enabled: int
    consumed: int

    @property
    def present(self) -> bool:
        return bool(self.skus) and self.enabled > 0


def premium_of(skus: Sequence[SubscribedSku]) -> Premium:
    found = [
        s
        for s in skus
        if s.capability_status in ("Enabled", "Warning")
        and any(p.plan_id.lower() in PREMIUM_PLANS and p.provisioning_status == "Success" for p in s.service_plans)
    ]
    return Premium(
        tuple(s.sku_part_number for s in found),
        sum(s.enabled_units for s in found),
        sum(s.consumed_units for s in found),
    )


def check_premium(premium: Premium | Unavailable) -> Check:
    """Seed 004, step 6 and "Things that bite people": without P1, CA for guests is created but not enforced."""
    if isinstance(premium, Unavailable):
        return _unknown(PREMIUM, PREMIUM_TITLE, premium.reason, LICENCES)
    evidence = (
        f"SKUs with a P1/P2 plan: {', '.join(premium.skus) or 'none'}",
        f"seats: {premium.enabled} bought, {premium.consumed} assigned",
    )
    if not premium.present:
        return Check(
            PREMIUM,
            PREMIUM_TITLE,
            Status.FAIL,
            "no Entra ID P1/P2: Conditional Access for guests is not enforced and signInActivity (the "
            "stale sweep's evidence) is unavailable",
            evidence,
            "buy Entra ID P1 (or a suite that includes it, e.g. Microsoft 365 E3/Business Premium) and assign it",
            LICENCES,
        )
    if premium.consumed == 0:
        return Check(
            PREMIUM,
            PREMIUM_TITLE,
            Status.WARN,
            "P1/P2 is bought but assigned to nobody",
            evidence,
            "assign the P1/P2 licences before relying on Conditional Access",
            LICENCES,
        )
    return Check(PREMIUM, PREMIUM_TITLE, Status.PASS, "Entra ID P1/P2 is present and assigned", evidence, "", LICENCES)


GUEST_MFA = "guest-mfa"
GUEST_MFA_TITLE = "MFA for guests (Conditional Access)"
MFA_FIX = (
    "New policy 'MFA for guest users': Users > Select users and groups > Guest or external users; Target "
    "resources > All cloud apps; Grant > Require multifactor authentication (or an authentication strength); "
    "Enable policy: On"
)


def check_guest_mfa(
    policies: Sequence[CaPolicy] | Unavailable, premium: Premium | Unavailable, guest_group_id: str | None = None
) -> Check:
    """Seed 004, step 6: an enabled policy that targets guests and requires MFA for all cloud apps."""
    if isinstance(policies, Unavailable):
        return _unknown(GUEST_MFA, GUEST_MFA_TITLE, policies.reason, CONDITIONAL_ACCESS)
    for_guests = [
        p
        for p in policies
        if p.active and p.reaches_guests(guest_group_id) and "block" not in p.controls and not p.risk_based
    ]
    mfa = [p for p in for_guests if p.requires_mfa]
    unseen = [p for p in for_guests if p.grant_unseen]
    evidence = tuple(p.describe() for p in mfa + unseen) or (f"{len(policies)} policies, none requires MFA of guests",)
    full = [p for p in mfa if p.enabled and p.all_apps and not p.exclude_apps]
    no_premium = isinstance(premium, Premium) and not premium.present
    if (full or mfa) and no_premium:
        return Check(
            GUEST_MFA,
            GUEST_MFA_TITLE,
            Status.FAIL,
            "a policy requires MFA of guests, but without Entra ID P1 it is not enforced",
            evidence,
            "license Entra ID P1 (see the P1/P2 check); the policy then takes effect",
            LICENCES,
        )
    if full:
        return Check(
            GUEST_MFA,
            GUEST_MFA_TITLE,
            Status.PASS,
            f"enforced for guests on all cloud apps by {', '.join(repr(p.name) for p in full)}",
            evidence,
            "",
            CONDITIONAL_ACCESS,
        )
    if mfa:
        reasons = []
        if any(p.report_only for p in mfa):
            reasons.append("report-only (not enforced)")
        if any(not p.all_apps or p.exclude_apps for p in mfa):
            reasons.append("not all cloud apps")
        return Check(
            GUEST_MFA,
            GUEST_MFA_TITLE,
            Status.WARN,
            "MFA for guests is only partly enforced: " + " and ".join(reasons),
            evidence,
            "turn the policy On and target All cloud apps (exclude nothing guests use)",
            CONDITIONAL_ACCESS,
        )
    if unseen:
        return Check(
            GUEST_MFA,
            GUEST_MFA_TITLE,
            Status.WARN,
            "a policy targets guests but Graph did not return its grant (an authentication strength?): "
            "cannot confirm MFA",
            evidence,
            "open the policy and check its Grant",
            CONDITIONAL_ACCESS,
        )
    return Check(
        GUEST_MFA,
        GUEST_MFA_TITLE,
        Status.FAIL,
        "no Conditional Access policy requires MFA of guests",
        evidence,
        MFA_FIX,
        CONDITIONAL_ACCESS,
    )


RISK = "risk-policies"
RISK_TITLE = "Risk-based policies and guests"
RISK_FIX = (
    'create a group holding every guest (dynamic rule user.userType -eq "Guest"), exclude it from every '
    "Conditional Access policy with a user-risk or sign-in-risk condition, and set POSTURE_GUEST_GROUP_ID to it; "
    "or keep guests in scope with guestwarden's risk flow on, so blocked guests are told to fix it at home"
)
LEGACY_RISK_NOTE = (
    "Identity Protection's built-in user-risk and sign-in-risk policies are not readable through Graph v1.0: "
    "check Protection > Identity Protection by hand"
)


def check_risk_policies(
    policies: Sequence[CaPolicy] | Unavailable,
    flow: RiskFlow,
    blocked: BlockedGuests | Unavailable,
    guest_group_id: str | None = None,
) -> Check:
    """Seed 000: a risk policy blocks a risky guest, and only the guest's home tenant can remediate it."""
    if isinstance(blocked, Unavailable):
        blocked_line = f"guests blocked by home-tenant risk: unknown ({blocked.reason})"
        blocked_count = 0
    else:
        domains = f" from {', '.join(blocked.domains[:5])}" if blocked.domains else ""
        blocked_line = (
            f"guests blocked by home-tenant risk in the last {blocked.days} days: {blocked.guests} "
            f"({blocked.sign_ins} sign-ins){domains}"
        )
        blocked_count = blocked.guests
    context = (flow.describe(), blocked_line, LEGACY_RISK_NOTE)
    if isinstance(policies, Unavailable):
        check = _unknown(RISK, RISK_TITLE, policies.reason, CONDITIONAL_ACCESS)
        return replace(check, evidence=context)
    risky = [p for p in policies if p.active and p.risk_based]
    reaching = [p for p in risky if p.reaches_guests(guest_group_id)]
    # a policy that excludes groups may exclude every guest through one of them: without POSTURE_GUEST_GROUP_ID
    # we cannot tell, so it is neither counted as including guests nor as leaving them out
    maybe = [p for p in reaching if guest_group_id is None and p.exclude_groups]
    hitting = [p for p in reaching if p not in maybe]

    def scope(policy: CaPolicy) -> str:
        if policy in maybe:
            return f" (excludes {len(policy.exclude_groups)} group(s): guests unless one holds them all)"
        return " (includes guests)" if policy in hitting else " (guests excluded)"

    evidence = tuple(p.describe() + scope(p) for p in risky)
    meaning = (
        "a risky guest is blocked here and cannot fix it here: only its home tenant can (self-service password "
        "reset at home, or the home admin dismisses the risk)"
    )
    if any(p.enabled for p in hitting):
        status = Status.WARN if flow.on else Status.FAIL
        tail = "guestwarden tells blocked guests what to do" if flow.on else "and nobody tells the guest why"
        return Check(
            RISK,
            RISK_TITLE,
            status,
            f"{len([p for p in hitting if p.enabled])} enabled risk policy(ies) include guests: {meaning}; " + tail,
            evidence + context,
            RISK_FIX,
            CONDITIONAL_ACCESS,
        )
    if hitting:
        return Check(
            RISK,
            RISK_TITLE,
            Status.WARN,
            f"a report-only risk policy includes guests: once enabled, {meaning}",
            evidence + context,
            RISK_FIX,
            CONDITIONAL_ACCESS,
        )
    if maybe:
        return Check(
            RISK,
            RISK_TITLE,
            Status.WARN,
            f"{len(maybe)} risk policy(ies) exclude groups: set POSTURE_GUEST_GROUP_ID to the group holding every "
            "guest to tell whether guests are left out",
            evidence + context,
            RISK_FIX,
            CONDITIONAL_ACCESS,
        )
    if blocked_count:
        return Check(
            RISK,
            RISK_TITLE,
            Status.WARN,
            f"no risk policy here includes guests, yet {blocked_count} guest(s) were blocked by risk "
            "(an Identity Protection policy, or their home tenant's own)",
            evidence + context,
            RISK_FIX,
            CONDITIONAL_ACCESS,
        )
    summary = "risk policies exclude guests" if risky else "no risk-based Conditional Access policy"
    return Check(RISK, RISK_TITLE, Status.PASS, summary, evidence + context, "", CONDITIONAL_ACCESS)


HYGIENE = "hygiene"
HYGIENE_TITLE = "Guest hygiene"


@dataclass(frozen=True, slots=True)
class HygieneCounts:
    guests: int = 0
    without_sponsor: int = 0
    never_signed_in: int = 0
    pending_too_long: int = 0
    licensed_inactive: int = 0
    sign_ins_unknown: str | None = None
    """Why signInActivity could not be read (no Entra ID P1, AuditLog.Read.All not granted): the two counts that
    need it are then left out, the others still count."""

    def buckets(self) -> dict[str, int]:
        known = {"without a sponsor": self.without_sponsor, "invitation pending too long": self.pending_too_long}
        if self.sign_ins_unknown is None:
            known["joined but never signed in"] = self.never_signed_in
            known["holding a licence while inactive"] = self.licensed_inactive
        return known


@dataclass(frozen=True, slots=True)
class HygieneRules:
    now: datetime
    pending_days: int
    inactive_days: int


def count_guest(counts: HygieneCounts, user: DirectoryUser, has_sponsor: bool, rules: HygieneRules) -> HygieneCounts:
    """One guest added to the counts. Never signed in: joined more than `inactive_days` ago and no sign-in on
    record. Pending too long: invited more than `pending_days` ago and not redeemed. Licensed while inactive:
    holds a licence and its last activity (any sign-in kind) is older than `inactive_days`."""
    inactive_before = rules.now - timedelta(days=rules.inactive_days)
    last = user.sign_in_activity.latest if user.sign_in_activity else None
    since = user.external_user_state_changed or user.created
    pending = user.external_user_state == "PendingAcceptance"
    old_pending = pending and since is not None and since < rules.now - timedelta(days=rules.pending_days)
    never = user.has_joined and last is None and since is not None and since < inactive_before
    inactive = user.has_joined and (last < inactive_before if last else bool(since and since < inactive_before))
    return replace(
        counts,
        guests=counts.guests + 1,
        without_sponsor=counts.without_sponsor + (0 if has_sponsor else 1),
        never_signed_in=counts.never_signed_in + never,
        pending_too_long=counts.pending_too_long + old_pending,
        licensed_inactive=counts.licensed_inactive + (bool(user.assigned_sku_ids) and inactive),
    )


def check_hygiene(counts: HygieneCounts | Unavailable, rules: HygieneRules, fail_ratio: float = 0.25) -> Check:
    """Counts an admin acts on: each bucket empty passes; any guest in one warns; a bucket holding more than
    `fail_ratio` of the guests fails."""
    if isinstance(counts, Unavailable):
        return _unknown(HYGIENE, HYGIENE_TITLE, counts.reason, USERS)
    unread = (
        (f"never signed in, licensed while inactive: unknown ({counts.sign_ins_unknown})",)
        if counts.sign_ins_unknown
        else ()
    )
    evidence = (
        f"guests: {counts.guests}",
        *(f"{name}: {n}" for name, n in counts.buckets().items()),
        *unread,
        f"thresholds: pending > {rules.pending_days} days (STALE_PENDING_DAYS), inactive > "
        f"{rules.inactive_days} days (STALE_INACTIVE_DAYS)",
    )
    worst_bucket = max(counts.buckets().items(), key=lambda kv: kv[1])
    fix = (
        "add a sponsor to each guest (user > Sponsors), and let guestwarden's stale sweep warn, disable and "
        "delete stale guests and never-redeemed invitations (docs/stale-guests.md)"
    )
    if worst_bucket[1] == 0:
        return Check(
            HYGIENE, HYGIENE_TITLE, Status.PASS, "every guest has a sponsor and is in use", evidence, "", USERS
        )
    share = worst_bucket[1] / counts.guests if counts.guests else 0.0
    status = Status.FAIL if share > fail_ratio else Status.WARN
    summary = ", ".join(f"{n} {name}" for name, n in counts.buckets().items() if n)
    return Check(HYGIENE, HYGIENE_TITLE, status, summary, evidence, fix, USERS)


ORDER = (INVITES, GUEST_ACCESS, GUEST_MFA, PREMIUM, RISK, HYGIENE)
"""The checks in the issue's order (doctor and reports keep it)."""

DOCTOR_CHECKS = frozenset({PREMIUM, RISK})
"""The checks that concern guestwarden's own working: P1 (signInActivity, the sweep's evidence) and risk policies
(the risk flow's reason to exist)."""


def ordered(checks: Iterable[Check]) -> tuple[Check, ...]:
    position = {key: i for i, key in enumerate(ORDER)}
    return tuple(sorted(checks, key=lambda c: position.get(c.key, len(ORDER))))
