"""Contract table: which application permissions (app roles on Microsoft Graph) grant each route the simulator
serves. Data, not code paths: the dispatcher asks `requirement()` and refuses what a token's `roles` do not cover
with Graph's 403 (see local/graph_sim/server.py); tests/integration/test_graph_sim_permissions.py walks every row.

Each row cites where it comes from:

- `META`: Microsoft's route -> permission metadata, github.com/microsoftgraph/msgraph-metadata
  `permissions/beta/<Name>.json` at commit 7a4530b (2022-08-16). A permission grants a route for app-only calls
  when one of its path sets has the `Application` scheme, the method and the path.
- `DOCS`: the route's page in github.com/microsoftgraph/microsoft-graph-docs-contrib (its Permissions table,
  often an include under api-reference/v1.0/includes/permissions/), for what the 2022 metadata lacks:
  User.EnableDisableAccount.All, User.RevokeSessions.All, LicenseAssignment.ReadWrite.All, /users/{id}/sponsors,
  /subscriptions, and the documented all-of cases.

A row's `grants` is a list of alternatives; one alternative is a set of roles that must ALL be held. So
`any_of("A", "B")` is "A or B" and `all_of("A", "B")` is "A and B".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Grants = tuple[frozenset[str], ...]

META = "msgraph-metadata permissions/beta/{} @7a4530b"
DOCS = "microsoft-graph-docs-contrib {}"


def any_of(*roles: str) -> Grants:
    """Any one of these roles grants the route."""
    return tuple(frozenset({role}) for role in roles)


def all_of(*roles: str) -> Grants:
    """Only all of these roles together grant the route."""
    return (frozenset(roles),)


def either(*alternatives: Grants) -> Grants:
    return tuple(grant for alternative in alternatives for grant in alternative)


def meta(*files: str) -> str:
    return "; ".join(META.format(f"{name}.json") for name in files)


def docs(*paths: str) -> str:
    return "; ".join(DOCS.format(path) for path in paths)


def route_pattern(route: str) -> re.Pattern[str]:
    """`GET /users/{id}` -> a case-insensitive full-match pattern over `GET /users/<anything but a slash>`."""
    method, _, template = route.partition(" ")
    parts = re.split(r"(\{[^}]+\})", template)
    body = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(f"{re.escape(method)} {body}", re.IGNORECASE)


@dataclass(frozen=True)
class RoutePermission:
    """The application permissions that grant one route (method + template, ids as `{name}`)."""

    route: str
    grants: Grants
    source: str
    note: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", route_pattern(self.route))

    @property
    def method(self) -> str:
        return self.route.split(" ", 1)[0]


@dataclass(frozen=True)
class PropertyPermission:
    """A property of a request that changes what a route needs.

    `where` says where the property appears: `select` / `filter` (query options; signInActivity), `body` (a
    PATCH payload's top-level key) or `body-true` (a top-level key set to true: a switch such as an invitation's
    resetRedemption, which costs nothing when false). `mode` "also": the route's own grants AND these; "instead":
    for this property these grants replace the route's (a PATCH is granted when every property in its body is).
    """

    route: str
    where: Literal["select", "filter", "body", "body-true"]
    property: str
    grants: Grants
    mode: Literal["also", "instead"]
    source: str
    note: str = ""


USER_READ = any_of("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
GROUP_READ = any_of(
    "GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"
)
APP_READ = any_of("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
SUBSCRIPTION_SOURCE = docs(
    "api-reference/v1.0/api/subscription-post-subscriptions.md (user row)",
    "api-reference/v1.0/api/subscription-list.md (user row; an app sees the subscriptions it created with the "
    "permission it created them with)",
)
SUBSCRIPTION_NOTE = "the permission of the subscribed resource: /users only in the simulator"

ROUTES: tuple[RoutePermission, ...] = (
    # users ------------------------------------------------------------------------------------------------------
    RoutePermission("GET /users", USER_READ, meta("User", "Directory")),
    RoutePermission(
        "GET /users/$count",
        USER_READ,
        docs("api-reference/v1.0/api/user-list.md"),
        "$count is a segment of the users collection: the list's permissions (not in the metadata)",
    ),
    RoutePermission("GET /users/{id}", USER_READ, meta("User", "Directory")),
    RoutePermission("POST /users", any_of("User.ReadWrite.All", "Directory.ReadWrite.All"), meta("User", "Directory")),
    RoutePermission(
        "PATCH /users/{id}",
        any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("User", "Directory"),
        "User.ManageIdentities.All (also in the metadata) covers only the identities property: not modelled",
    ),
    RoutePermission("DELETE /users/{id}", any_of("User.ReadWrite.All"), meta("User")),
    RoutePermission(
        "POST /users/{id}/revokeSignInSessions",
        any_of("User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("User", "Directory")
        + "; "
        + docs(
            "api-reference/v1.0/api/user-revokesigninsessions.md",
            "api-reference/v1.0/includes/permissions/user-revokesigninsessions-permissions.md",
        ),
        "User.RevokeSessions.All is newer than the metadata snapshot",
    ),
    RoutePermission(
        "GET /users/{id}/sponsors",
        any_of("User.Read.All", "User.ReadWrite.All"),
        docs(
            "api-reference/v1.0/api/user-list-sponsors.md",
            "api-reference/v1.0/includes/permissions/user-list-sponsors-permissions.md",
        ),
        "not in the metadata snapshot; with User.Read.All a sponsor group has limited info (includes/limited-info.md)",
    ),
    RoutePermission(
        "POST /users/{id}/sponsors/$ref",
        any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        docs("api-reference/v1.0/api/user-post-sponsors.md"),
    ),
    RoutePermission(
        "DELETE /users/{id}/sponsors/{sponsorId}/$ref",
        any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        docs("api-reference/v1.0/api/user-delete-sponsors.md"),
    ),
    RoutePermission(
        "GET /users/{id}/memberOf",
        any_of("Directory.Read.All", "Directory.ReadWrite.All"),
        meta("Directory"),
        "the metadata grants GroupMember.Read.All here for delegated calls only",
    ),
    RoutePermission("GET /users/delta", USER_READ, meta("User", "Directory")),
    RoutePermission("GET /users/delta()", USER_READ, meta("User", "Directory"), "msgraph-sdk's spelling of delta"),
    # licences ---------------------------------------------------------------------------------------------------
    RoutePermission(
        "GET /subscribedSkus",
        any_of("Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
        meta("Organization", "Directory")
        + "; "
        + docs("api-reference/v1.0/includes/permissions/subscribedsku-list-permissions.md"),
        "LicenseAssignment.ReadWrite.All does not grant it",
    ),
    RoutePermission(
        "POST /users/{id}/assignLicense",
        any_of("LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("User", "Directory")
        + "; "
        + docs("api-reference/v1.0/includes/permissions/user-assignlicense-permissions.md"),
        "LicenseAssignment.ReadWrite.All (least privileged) has no path set in the metadata snapshot",
    ),
    # groups -----------------------------------------------------------------------------------------------------
    RoutePermission("GET /groups", GROUP_READ, meta("GroupMember", "Group", "Directory")),
    RoutePermission("GET /groups/{id}", GROUP_READ, meta("GroupMember", "Group", "Directory")),
    RoutePermission(
        "GET /groups/{id}/members",
        any_of(
            "GroupMember.Read.All",
            "GroupMember.ReadWrite.All",
            "Group.Read.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
        ),
        meta("GroupMember", "Group", "Directory"),
        "User.Read.All does not grant it",
    ),
    RoutePermission(
        "GET /groups/{id}/transitiveMembers",
        any_of(
            "GroupMember.Read.All",
            "GroupMember.ReadWrite.All",
            "Group.Read.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
        ),
        meta("GroupMember", "Group", "Directory")
        + "; "
        + docs("api-reference/v1.0/api/group-list-transitivemembers.md"),
        "User.Read.All does not grant it; Member.Read.Hidden for hidden-membership groups is not modelled",
    ),
    RoutePermission(
        "POST /groups/{id}/members/$ref",
        any_of("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("GroupMember", "Group", "Directory"),
        "the metadata spells it POST /groups/{id}/members",
    ),
    RoutePermission(
        "DELETE /groups/{id}/members/{memberId}/$ref",
        any_of("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("GroupMember", "Group", "Directory"),
        "the metadata spells it DELETE /groups/{id}/members/{id}",
    ),
    # directory --------------------------------------------------------------------------------------------------
    RoutePermission(
        "GET /directory/deletedItems/microsoft.graph.user",
        USER_READ,
        meta("User", "Directory"),
        "Application.* and Group.* rows of the metadata cover other object types",
    ),
    RoutePermission(
        "GET /directory/deletedItems/{id}",
        USER_READ,
        meta("User", "Directory"),
        "the simulator's deleted items are users; Application.*/Group.* cover other object types",
    ),
    RoutePermission(
        "POST /directory/deletedItems/{id}/restore",
        any_of("User.ReadWrite.All"),
        meta("User"),
        "restoring a user; Group.ReadWrite.All / Application.ReadWrite.* restore other object types",
    ),
    RoutePermission(
        "GET /organization",
        any_of("Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
        meta("Organization", "Directory"),
    ),
    RoutePermission(
        "GET /tenantRelationships/findTenantInformationByTenantId(tenantId={value})",
        any_of("CrossTenantInformation.ReadBasic.All"),
        meta("CrossTenantInformation"),
    ),
    # sign-in logs -----------------------------------------------------------------------------------------------
    RoutePermission(
        "GET /auditLogs/signIns",
        all_of("AuditLog.Read.All", "Directory.Read.All"),
        meta("AuditLog", "Directory")
        + "; "
        + docs(
            "api-reference/v1.0/api/signin-list.md",
            "api-reference/v1.0/includes/permissions/signin-list-permissions.md",
        ),
        "app-only access needs both (a documented known issue), though the metadata lists them as alternatives",
    ),
    RoutePermission(
        "GET /auditLogs/signIns/{id}",
        all_of("AuditLog.Read.All", "Directory.Read.All"),
        meta("AuditLog", "Directory") + "; " + docs("api-reference/v1.0/api/signin-get.md"),
        "as for the list",
    ),
    # mail -------------------------------------------------------------------------------------------------------
    RoutePermission("POST /users/{id}/sendMail", any_of("Mail.Send"), meta("Mail")),
    # invitations ------------------------------------------------------------------------------------------------
    RoutePermission(
        "POST /invitations",
        any_of("User.Invite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("User", "Directory")
        + "; "
        + docs(
            "api-reference/v1.0/api/invitation-post.md",
            "api-reference/v1.0/includes/permissions/invitation-post-permissions.md",
        ),
        "User.Invite.All is the least privileged; app-only calls fail when B2B invitations are off in the tenant",
    ),
    # change notifications ---------------------------------------------------------------------------------------
    RoutePermission("POST /subscriptions", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    RoutePermission("GET /subscriptions", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    RoutePermission("GET /subscriptions/{id}", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    RoutePermission("PATCH /subscriptions/{id}", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    RoutePermission("DELETE /subscriptions/{id}", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    RoutePermission("POST /subscriptions/{id}/reauthorize", USER_READ, SUBSCRIPTION_SOURCE, SUBSCRIPTION_NOTE),
    # service principals and app role assignments (guestwarden setup / doctor --identity) ------------------------
    RoutePermission(
        "GET /servicePrincipals",
        APP_READ,
        meta("Application", "Directory") + "; " + docs("api-reference/v1.0/api/serviceprincipal-list.md"),
        "the metadata snapshot grants Application.Read.All here for delegated calls only; the docs page for both",
    ),
    RoutePermission("GET /servicePrincipals/{id}", APP_READ, meta("Application", "Directory")),
    RoutePermission("GET /servicePrincipals/{id}/appRoleAssignments", APP_READ, meta("Application", "Directory")),
    RoutePermission("GET /servicePrincipals/{id}/appRoleAssignedTo", APP_READ, meta("Application", "Directory")),
    RoutePermission(
        "POST /servicePrincipals/{id}/appRoleAssignments",
        any_of("AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("AppRoleAssignment", "Directory"),
    ),
    RoutePermission(
        "POST /servicePrincipals/{id}/appRoleAssignedTo",
        any_of("AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"),
        meta("AppRoleAssignment", "Directory")
        + "; "
        + docs("api-reference/v1.0/api/serviceprincipal-post-approleassignedto.md"),
        "the metadata also lists read permissions for this POST; a write is not granted by a read role here",
    ),
    RoutePermission(
        "DELETE /servicePrincipals/{id}/appRoleAssignments/{assignmentId}",
        any_of("AppRoleAssignment.ReadWrite.All"),
        meta("AppRoleAssignment"),
    ),
    RoutePermission(
        "DELETE /servicePrincipals/{id}/appRoleAssignedTo/{assignmentId}",
        any_of("AppRoleAssignment.ReadWrite.All"),
        meta("AppRoleAssignment"),
    ),
    # posture (issue 18): the tenant's guest settings, Conditional Access policies and directory role assignments --
    RoutePermission(
        "GET /policies/authorizationPolicy",
        any_of("Policy.Read.All", "Policy.ReadWrite.Authorization"),
        docs("api-reference/v1.0/api/authorizationpolicy-get.md"),
    ),
    RoutePermission(
        "GET /identity/conditionalAccess/policies",
        any_of("Policy.Read.All"),
        docs("api-reference/v1.0/api/conditionalaccessroot-list-policies.md"),
        "the v1.0 page lists Policy.Read.All only; the current page moved its table into "
        "includes/permissions/conditionalaccessroot-list-policies-permissions.md, which could not be read: "
        "Policy.Read.ConditionalAccess (named by the CA evaluation APIs) is not granted here (the strict reading)",
    ),
    RoutePermission(
        "GET /roleManagement/directory/roleAssignments",
        any_of(
            "RoleManagement.Read.Directory",
            "RoleManagement.Read.All",
            "Directory.Read.All",
            "RoleManagement.ReadWrite.Directory",
            "Directory.ReadWrite.All",
        ),
        docs("api-reference/v1.0/api/rbacapplication-list-roleassignments.md (directory provider)"),
    ),
    # $batch -----------------------------------------------------------------------------------------------------
    RoutePermission(
        "POST /$batch",
        (frozenset(),),
        docs("concepts/json-batching.md"),
        "the envelope needs no permission: each inner request is authorized on its own",
    ),
)

SIGN_IN_ACTIVITY_SOURCE = docs(
    "api-reference/v1.0/resources/signinactivity.md",
    "api-reference/v1.0/api/user-list.md (signInActivity needs AuditLog.Read.All in addition)",
)
ACCOUNT_ENABLED_SOURCE = docs(
    "api-reference/v1.0/api/user-update.md (accountEnabled: User.EnableDisableAccount.All with User.Read.All)",
    "api-reference/v1.0/includes/permissions/user-update-permissions.md",
)

PROPERTIES: tuple[PropertyPermission, ...] = (
    PropertyPermission(
        "POST /invitations",
        "body-true",
        "resetRedemption",
        any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        "also",
        docs("api-reference/v1.0/api/invitation-post.md"),
        "resetting a redeemed guest: User.ReadWrite.All is the least privileged (User.Invite.All is not enough)",
    ),
    PropertyPermission(
        "GET /users", "select", "signInActivity", any_of("AuditLog.Read.All"), "also", SIGN_IN_ACTIVITY_SOURCE
    ),
    PropertyPermission(
        "GET /users", "filter", "signInActivity", any_of("AuditLog.Read.All"), "also", SIGN_IN_ACTIVITY_SOURCE
    ),
    PropertyPermission(
        "GET /users/{id}", "select", "signInActivity", any_of("AuditLog.Read.All"), "also", SIGN_IN_ACTIVITY_SOURCE
    ),
    PropertyPermission(
        "PATCH /users/{id}",
        "body",
        "accountEnabled",
        either(
            all_of("User.EnableDisableAccount.All", "User.Read.All"),
            any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        ),
        "instead",
        ACCOUNT_ENABLED_SOURCE,
        "User.EnableDisableAccount.All is newer than the metadata snapshot",
    ),
    PropertyPermission(
        "PATCH /users/{id}",
        "body",
        "usageLocation",
        any_of("User.ReadWrite.All", "Directory.ReadWrite.All"),
        "instead",
        meta("User", "Directory") + "; " + docs("api-reference/v1.0/api/user-update.md"),
        "no narrower permission covers it (User.EnableDisableAccount.All covers accountEnabled only)",
    ),
)


def route_for(method: str, path: str) -> RoutePermission | None:
    """The row for a concrete request (path relative to /v1.0); literal routes win over templated ones."""
    key = f"{method.upper()} {path.rstrip('/') or '/'}"
    found = [row for row in ROUTES if row.pattern.fullmatch(key)]
    if not found:
        return None
    return min(found, key=lambda row: row.route.count("{"))


def _names(text: str | None) -> list[str]:
    return [part.strip().split("/")[0].lower() for part in (text or "").split(",") if part.strip()]


def _mentions(where: str, name: str, query: Mapping[str, str], body: Any) -> bool:
    if where == "select":
        return name.lower() in _names(query.get("$select"))
    if where == "filter":
        return re.search(rf"\b{re.escape(name)}\b", query.get("$filter") or "", re.IGNORECASE) is not None
    if where == "body-true":
        return isinstance(body, dict) and body.get(name) is True
    return isinstance(body, dict) and name in body


@dataclass(frozen=True)
class Requirement:
    """What one request needs: every clause must be satisfied; a clause is satisfied by any one of its grants."""

    route: RoutePermission
    clauses: tuple[Grants, ...]

    def satisfied_by(self, roles: Iterable[str]) -> bool:
        held = set(roles)
        return all(any(grant <= held for grant in clause) for clause in self.clauses)


def requirement(method: str, path: str, query: Mapping[str, str], body: Any) -> Requirement | None:
    """What a request needs, from ROUTES and PROPERTIES; None for a route the table does not know."""
    row = route_for(method, path)
    if row is None:
        return None
    rules = [p for p in PROPERTIES if p.route == row.route and _mentions(p.where, p.property, query, body)]
    clauses: list[Grants] = [rule.grants for rule in rules if rule.mode == "also"]
    instead = [rule for rule in rules if rule.mode == "instead"]
    if instead and isinstance(body, dict) and all(any(rule.property == key for rule in instead) for key in body):
        clauses += [rule.grants for rule in instead]  # every property has its own rule: the route's own is moot
    else:
        clauses += [row.grants, *(rule.grants for rule in instead)]
    return Requirement(row, tuple(clauses))


def known_roles() -> set[str]:
    """Every role some row names (the roles a test can grant or withhold)."""
    rows: list[Grants] = [row.grants for row in ROUTES] + [p.grants for p in PROPERTIES]
    return {role for grants in rows for grant in grants for role in grant}
