"""The Graph application permissions (app roles) each flow needs: the single source.

docs/permissions.md's "Per flow" table is generated from PERMISSIONS (`make docs`), `guestwarden setup
grant-permissions` grants what `required_permissions` returns, and `guestwarden doctor` checks the same set
against the roles in the identity's token. Change a flow's Graph calls, change its rows here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.settings import Feature, Settings

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
"""The appId of Microsoft Graph's service principal, the same in every tenant."""

FLOWS: dict[str, tuple[Feature, ...]] = {
    "licensing": (Feature.WEBHOOK, Feature.SUBSCRIPTION, Feature.LICENSING, Feature.ALERTS),
    "risk": (Feature.RISK,),
    "stale": (Feature.STALE,),
    "inventory": (Feature.INVENTORY,),
    "posture": (Feature.POSTURE,),
}
"""The flows an operator can name (`--flows`), and the settings features each of them runs."""


@dataclass(frozen=True)
class Condition:
    """A row applies only when the setting (by its app-setting name) has this value (case-insensitive)."""

    setting: str
    value: str

    def holds(self, settings: Settings) -> bool:
        try:
            return str(settings.value(self.setting)).lower() == self.value.lower()
        except KeyError:
            raise ValueError(f"permission condition names an unknown setting: {self.setting}") from None

    def __str__(self) -> str:
        return f"{self.setting}={self.value}"

    def __and__(self, other: Condition | AllOf) -> AllOf:
        return AllOf((self, *(other.conditions if isinstance(other, AllOf) else (other,))))

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return (self,)


@dataclass(frozen=True)
class AllOf:
    """A row that applies only when every one of its conditions holds (`A & B`)."""

    conditions: tuple[Condition, ...]

    def holds(self, settings: Settings) -> bool:
        return all(condition.holds(settings) for condition in self.conditions)

    def __and__(self, other: Condition | AllOf) -> AllOf:
        return AllOf((*self.conditions, *other.conditions))

    def __str__(self) -> str:
        return ", ".join(str(condition) for condition in self.conditions)


@dataclass(frozen=True)
class PermissionRow:
    flow: str
    permission: str
    """The app role value on Microsoft Graph, e.g. `User.Read.All`."""
    why: str
    without: str
    """What breaks without it (empty: the flow cannot run at all)."""
    features: frozenset[Feature]
    """The row applies when any of these features is enabled."""
    when: Condition | AllOf | None = None

    def applies(self, features: Iterable[Feature], settings: Settings | None) -> bool:
        if not self.features & set(features):
            return False
        return self.when is None or settings is None or self.when.holds(settings)


def _row(
    flow: str, permission: str, why: str, without: str, *features: Feature, when: Condition | AllOf | None = None
) -> PermissionRow:
    return PermissionRow(flow, permission, why, without, frozenset(features), when)


SKU_MODE = Condition("LICENSE_MODE", "sku")
GROUP_MODE = Condition("LICENSE_MODE", "group")
REAL_SWEEP = Condition("STALE_DRY_RUN", "false")
RECLAIM = Condition("STALE_RECLAIM_LICENSES", "true") & REAL_SWEEP
"""Licences are taken back (and so given back) only by a real sweep, or a sponsor's answer in one."""
WELCOME_MAIL = Condition("LICENSE_WELCOME_MAIL", "true")
REINVITE = Condition("STALE_REINVITE_PENDING", "true") & REAL_SWEEP
"""Never-redeemed invitations are re-sent only by a real sweep (a dry run shows `would re-invite`)."""
CONVERSION_LICENCE = Condition("CONVERSION_REMOVE_GUEST_LICENSE", "true")
"""A guest's licence is taken back when it becomes a Member (shared.services.conversion)."""

PERMISSIONS: tuple[PermissionRow, ...] = (
    _row(
        "all",
        "User.Read.All",
        "read guests (`GET /users/{id}`, `GET /users?$filter=userType eq 'Guest'`), users/delta, the `/users` "
        "change-notification subscription, sponsors (`GET /users/{id}/sponsors`)",
        "nothing works",
        Feature.GRAPH,
        Feature.SUBSCRIPTION,
        Feature.LICENSING,
        Feature.RISK,
        Feature.STALE,
        Feature.INVENTORY,
        Feature.POSTURE,
    ),
    _row(
        "1. licence on acceptance",
        "User.ReadWrite.All",
        "set `usageLocation` before a direct licence (no narrower permission covers it)",
        "sku mode cannot license guests without a usage location",
        Feature.LICENSING,
        when=SKU_MODE,
    ),
    _row(
        "1. licence on acceptance",
        "LicenseAssignment.ReadWrite.All",
        "`POST /users/{id}/assignLicense`",
        "sku mode fails with 403",
        Feature.LICENSING,
        when=SKU_MODE,
    ),
    _row(
        "1. licence on acceptance",
        "Organization.Read.All",
        "`GET /subscribedSkus`: find the SKU and its free seats (LicenseAssignment.ReadWrite.All does not grant it)",
        "sku mode fails with 403 before any licence is assigned",
        Feature.LICENSING,
        when=SKU_MODE,
    ),
    _row(
        "1. licence on acceptance",
        "GroupMember.ReadWrite.All",
        "add the guest to the licensing group",
        "group mode fails with 403",
        Feature.LICENSING,
        when=GROUP_MODE,
    ),
    _row(
        "1. licence on acceptance",
        "Mail.Send",
        "the no-free-seat alert to admins (from `MAIL_SENDER` only: see below)",
        "the alert fails; licensing still reschedules",
        Feature.ALERTS,
    ),
    _row(
        "1. licence on acceptance",
        "Mail.Send",
        "the welcome mail to each guest guestwarden licensed (from `MAIL_SENDER` only: see below)",
        "the welcome mail fails (4xx: the message is retried, then dead-lettered; the licence stays)",
        Feature.LICENSING,
        when=WELCOME_MAIL,
    ),
    _row(
        "1. conversions and identity drift",
        "User.Read.All",
        "re-read each changed user with its `identities` (`GET /users/{id}?$select=...,identities`: returned only "
        "on `$select`) to see a guest become a Member or change its sign-in identity",
        "nothing works",
        Feature.LICENSING,
    ),
    _row(
        "1. conversions and identity drift",
        "Mail.Send",
        "the identity-drift alert to admins, once per change (from `MAIL_SENDER` only: see below)",
        "the alert fails (4xx: the message is retried, then dead-lettered); the drift stays in the audit log",
        Feature.ALERTS,
    ),
    _row(
        "1. conversions and identity drift",
        "LicenseAssignment.ReadWrite.All",
        "take the guest licence back from a converted member (`POST /users/{id}/assignLicense` removeLicenses, "
        "in a `$batch`)",
        "the conversion is audited with the removal failed; the licence stays",
        Feature.LICENSING,
        when=CONVERSION_LICENCE & SKU_MODE,
    ),
    _row(
        "1. conversions and identity drift",
        "Organization.Read.All",
        "`GET /subscribedSkus`: the skuId of LICENSE_SKU, to take it back from a converted member",
        "the conversion fails with 403 and is retried, then dead-lettered",
        Feature.LICENSING,
        when=CONVERSION_LICENCE & SKU_MODE,
    ),
    _row(
        "1. conversions and identity drift",
        "GroupMember.ReadWrite.All",
        "take a converted member out of the licensing group (`DELETE /groups/{id}/members/{id}/$ref`, in a `$batch`)",
        "the conversion is audited with the removal failed; the membership stays",
        Feature.LICENSING,
        when=CONVERSION_LICENCE & GROUP_MODE,
    ),
    _row(
        "2./3. risk-blocked guests",
        "AuditLog.Read.All",
        "`GET /auditLogs/signIns` (with `Directory.Read.All`: both are required for app-only access, a "
        "documented known issue)",
        "detection fails with 403",
        Feature.RISK,
    ),
    _row(
        "2./3. risk-blocked guests",
        "Directory.Read.All",
        "`GET /auditLogs/signIns` (with `AuditLog.Read.All`, see above)",
        "detection fails with 403",
        Feature.RISK,
    ),
    _row(
        "2. guest notice",
        "Mail.Send",
        "mail the guest from `MAIL_SENDER` (restricted to it, see below); also the `email` ticket sink",
        "the notice fails (4xx: the message is retried, then dead-lettered)",
        Feature.RISK,
    ),
    _row(
        "3. home-tenant ticket",
        "CrossTenantInformation.ReadBasic.All",
        "`findTenantInformationByTenantId`: the home tenant's name and default domain",
        "tickets still open, naming the tenant by id and matching the partner directory by tenant id only",
        Feature.RISK,
    ),
    _row(
        "4. stale sweep",
        "AuditLog.Read.All",
        "`signInActivity` on users (also needs Entra ID P1/P2)",
        "the sweep refuses to run: it cannot tell active from stale",
        Feature.STALE,
    ),
    _row(
        "4. stale sweep",
        "GroupMember.Read.All",
        "read the exclusion groups' members, nested groups' members included (`GET /groups/{id}/transitiveMembers`; "
        "User.Read.All does not grant it); also the members of a sponsor group (`GET /groups/{id}/members`)",
        "the sweep stops (aborted) before it judges anyone: it never acts without knowing who is excluded",
        Feature.STALE,
    ),
    _row(
        "4. stale sweep",
        "User.EnableDisableAccount.All",
        "disable (`accountEnabled=false`) and re-enable guests (the sweep, and a sponsor's keep/remove answer)",
        "disabling and re-enabling fail with 403",
        Feature.STALE,
    ),
    _row(
        "4. stale sweep",
        "User.RevokeSessions.All",
        "revoke a disabled guest's sessions (the sweep, and a sponsor's \"remove now\")",
        "revoking fails with 403: a disabled guest keeps its sessions until their tokens expire",
        Feature.STALE,
    ),
    _row(
        "4. stale sweep",
        "User.ReadWrite.All",
        "soft-delete and restore guests",
        "deleting and `guestwarden restore` fail with 403",
        Feature.STALE,
    ),
    _row(
        "4. stale sweep",
        "Mail.Send",
        "warn sponsors (and guests, with `STALE_NOTIFY_GUEST`) before anything is taken away",
        "warning mails fail with 403",
        Feature.STALE,
        when=REAL_SWEEP,
    ),
    _row(
        "4. stale sweep",
        "LicenseAssignment.ReadWrite.All",
        "licence reclaim: take a disabled guest's direct licences back and give them back when it returns "
        "(`POST /users/{id}/assignLicense`)",
        "disables still happen; reclaiming fails (audited as `reclaimFailed`), so the seats stay taken",
        Feature.STALE,
        when=RECLAIM,
    ),
    _row(
        "4. stale sweep",
        "Organization.Read.All",
        "licence reclaim: `GET /subscribedSkus`, the free seats before giving a licence back",
        "a returning guest's licences are not given back (the re-enable or restore itself works)",
        Feature.STALE,
        when=RECLAIM,
    ),
    _row(
        "4. stale sweep",
        "GroupMember.ReadWrite.All",
        "licence reclaim: leave and rejoin the licensing group "
        "(`DELETE /groups/{id}/members/{id}/$ref`, `POST /groups/{id}/members/$ref`)",
        "the licensing-group membership of a disabled guest stays (audited as `reclaimFailed`)",
        Feature.STALE,
        when=RECLAIM & GROUP_MODE,
    ),
    _row(
        "4. stale sweep",
        "User.Invite.All",
        "re-invite before purge: re-send a never-redeemed invitation once, with the warning (`POST /invitations`; "
        "not `resetRedemption`, which is for redeemed guests and needs User.ReadWrite.All)",
        "the re-invite fails with 403 (audited as `failed`); the warning, disable and delete still happen",
        Feature.STALE,
        when=REINVITE,
    ),
    _row(
        "inventory (`guestwarden guests`)",
        "Organization.Read.All",
        "`GET /subscribedSkus`: licence names",
        "the inventory fails with 403",
        Feature.INVENTORY,
    ),
    _row(
        "inventory (`guestwarden guests`)",
        "AuditLog.Read.All",
        "`signInActivity` on users: last activity (also needs Entra ID P1/P2)",
        "the inventory fails with 403",
        Feature.INVENTORY,
    ),
    # posture: read-only; an admin who leaves these out gets `unknown` checks, never a crash
    _row(
        "posture (`guestwarden posture`, nightly)",
        "Policy.Read.All",
        "`GET /policies/authorizationPolicy` (who can invite, guest access level) and "
        "`GET /identity/conditionalAccess/policies` (MFA and risk policies for guests)",
        "the invite, guest-access, guest MFA and risk-policy checks show `unknown`",
        Feature.POSTURE,
    ),
    _row(
        "posture (`guestwarden posture`, nightly)",
        "RoleManagement.Read.Directory",
        "`GET /roleManagement/directory/roleAssignments?$filter=roleDefinitionId eq '<Guest Inviter>'"
        "&$expand=principal`: who holds Guest Inviter",
        "the invite check shows the setting but not the role holders",
        Feature.POSTURE,
    ),
    _row(
        "posture (`guestwarden posture`, nightly)",
        "Organization.Read.All",
        "`GET /subscribedSkus`: the Entra ID P1/P2 service plans and whether they are assigned",
        "the Entra ID P1/P2 check shows `unknown`",
        Feature.POSTURE,
    ),
    _row(
        "posture (`guestwarden posture`, nightly)",
        "AuditLog.Read.All",
        "`signInActivity` on guests (hygiene counts) and `GET /auditLogs/signIns` (guests blocked by risk, last "
        "30 days; with `Directory.Read.All`)",
        "the hygiene counts and the blocked-guest count show `unknown`",
        Feature.POSTURE,
    ),
    _row(
        "posture (`guestwarden posture`, nightly)",
        "Directory.Read.All",
        "`GET /auditLogs/signIns` (with `AuditLog.Read.All`: both are required for app-only access)",
        "the blocked-guest count shows `unknown`",
        Feature.POSTURE,
    ),
)


def features_for(flows: Iterable[str]) -> tuple[Feature, ...]:
    """The settings features of the named flows (plus Graph itself); ValueError names an unknown flow."""
    features: list[Feature] = [Feature.GRAPH]
    for flow in flows:
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}: choose from {', '.join(FLOWS)}")
        features += [f for f in FLOWS[flow] if f not in features]
    return tuple(features)


def applicable_rows(features: Iterable[Feature], settings: Settings | None = None) -> list[PermissionRow]:
    """The rows that apply to these features; with settings, conditional rows only when their condition holds
    (without settings, every conditional row counts: the union over all configurations)."""
    chosen = set(features)
    return [row for row in PERMISSIONS if row.applies(chosen, settings)]


def required_permissions(features: Iterable[Feature], settings: Settings | None = None) -> set[str]:
    """The app role values on Microsoft Graph that the enabled features need."""
    return {row.permission for row in applicable_rows(features, settings)}


def affected_by(permission: str, features: Iterable[Feature], settings: Settings | None = None) -> list[str]:
    """'flow: what breaks' for each applicable row of one permission (what a missing role costs)."""
    return [
        f"{row.flow}: {row.without or 'cannot run'}"
        for row in applicable_rows(features, settings)
        if row.permission == permission
    ]


def permissions_markdown() -> str:
    """The "Per flow" table of docs/permissions.md."""
    lines = ["| flow | permission | why | without it | only when |", "| --- | --- | --- | --- | --- |"]
    for row in PERMISSIONS:
        when = f"`{row.when}`" if row.when else ""
        lines.append(f"| {row.flow} | `{row.permission}` | {row.why} | {row.without} | {when} |")
    return "\n".join(lines) + "\n"


# --- granting: what the identity has, what it needs, what to change (pure; the adapter does the I/O) ---------
@dataclass(frozen=True)
class ServicePrincipal:
    id: str
    app_id: str
    display_name: str
    app_roles: dict[str, str]
    """Application app role value -> app role id (empty for an identity that exposes none)."""


@dataclass(frozen=True)
class RoleAssignment:
    id: str
    app_role_id: str
    resource_id: str


@dataclass(frozen=True)
class PlannedChange:
    action: str  # "grant" | "keep" | "remove" (with --prune) | "extra" (held, not needed, left alone)
    permission: str
    app_role_id: str
    assignment_id: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {
            "action": self.action,
            "permission": self.permission,
            "appRoleId": self.app_role_id,
            "assignmentId": self.assignment_id,
        }


class UnknownPermission(ValueError):
    """A required permission is not an app role of Microsoft Graph's service principal (a typo, or retired)."""


def plan_grants(
    required: set[str], graph: ServicePrincipal, assignments: list[RoleAssignment], prune: bool
) -> list[PlannedChange]:
    """Grant each required Graph role the identity lacks; keep the ones it has; with `prune`, remove the Graph
    roles it has but does not need. Roles on other resources are never touched."""
    unknown = sorted(required - graph.app_roles.keys())
    if unknown:
        raise UnknownPermission(f"not app roles of Microsoft Graph: {', '.join(unknown)}")
    value_of = {role_id: value for value, role_id in graph.app_roles.items()}
    held = {a.app_role_id: a for a in assignments if a.resource_id == graph.id}
    changes: list[PlannedChange] = []
    for permission in sorted(required):
        role_id = graph.app_roles[permission]
        existing = held.get(role_id)
        if existing is None:
            changes.append(PlannedChange("grant", permission, role_id))
        else:
            changes.append(PlannedChange("keep", permission, role_id, existing.id))
    for role_id, assignment in sorted(held.items(), key=lambda item: value_of.get(item[0], item[0])):
        permission = value_of.get(role_id, role_id)
        if permission not in required and prune:
            changes.append(PlannedChange("remove", permission, role_id, assignment.id))
        elif permission not in required:
            changes.append(PlannedChange("extra", permission, role_id, assignment.id))
    return changes
