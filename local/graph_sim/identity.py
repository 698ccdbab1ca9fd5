"""The tenant's identities as far as guestwarden cares: Microsoft Graph's service principal with its app roles
(the real, well-known ids), guestwarden's managed identity, the app role assignments between them, and the
token endpoint that issues app-only tokens whose `roles` claim lists the identity's granted Graph roles.

Tokens are JWTs signed with HS256 under a key derived from the tenant id (`signing_key`), so the simulator can
tell its own tokens from anything else: a bearer token it did not mint is refused with 401
InvalidAuthenticationToken, as Graph refuses a token Entra did not issue. `guestwarden doctor` reads their claims
exactly as it reads a real token's (payload decoded, signature not verified). `verify_token` checks the
signature, the audience and the tenant, not the expiry: tests move the simulator clock by days, and a real
client would simply fetch a new token (docs/tenant-fixture.md, "Tokens and permissions").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from local.graph_sim.clock import iso_z
from local.graph_sim.errors import GraphError
from local.graph_sim.notifications import SIM_APPLICATION_ID, SIM_CREATOR_ID
from shared.adapters.credentials import LOCAL_OPERATOR_CLIENT_ID

if TYPE_CHECKING:
    from local.graph_sim.store import TenantStore

Json = dict[str, Any]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SP_ID = "1f0e5c3a-7b2d-4c8e-9a61-d4f3b2a1c0e9"  # the object id differs per tenant; fixed for the fixture
TOKEN_LIFETIME = timedelta(hours=1)

GRAPH_APP_ROLES: dict[str, tuple[str, str]] = {
    # value: (id, display name). The ids are Microsoft Graph's published app role ids.
    "User.Read.All": ("df021288-bdef-4463-88db-98f22de89214", "Read all users' full profiles"),
    "User.ReadWrite.All": ("741f803b-c850-494e-b5df-cde7c675a1ca", "Read and write all users' full profiles"),
    "User.EnableDisableAccount.All": ("3011c876-62b7-4ada-afa2-506cbbecc68c", "Enable and disable user accounts"),
    "User.RevokeSessions.All": ("77f3a031-c388-4f99-b373-dc68676a979e", "Revoke all sign in sessions for a user"),
    "User.Invite.All": ("09850681-111b-4a89-9bed-3f2cae46d706", "Invite guest users to the organization"),
    "LicenseAssignment.ReadWrite.All": ("5facf0c1-8979-4e95-abcf-ff3d079771c0", "Manage all license assignments"),
    "GroupMember.ReadWrite.All": ("dbaae8cf-10b5-4b86-a4a1-f871c94c6695", "Read and write all group memberships"),
    "Mail.Send": ("b633e1c5-b582-4048-a93e-9f11b44c7e96", "Send mail as any user"),
    "AuditLog.Read.All": ("b0afded3-3588-46d8-8b3d-9842eff778da", "Read all audit log data"),
    "Directory.Read.All": ("7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Read directory data"),
    "Directory.ReadWrite.All": ("19dbc75e-c2e2-444c-a770-ec69d8559fc7", "Read and write directory data"),
    "CrossTenantInformation.ReadBasic.All": (
        "cac88765-0581-4025-9725-5ebc13f729ee",
        "Read cross-tenant basic information",
    ),
    "GroupMember.Read.All": ("98830695-27a2-44f7-8c18-0c3ebc9698f6", "Read all group memberships"),
    "Group.Read.All": ("5b567255-7703-4780-807c-7be8301ae99b", "Read all groups"),
    "Group.ReadWrite.All": ("62a82d76-70ea-41e2-9197-370581804d09", "Read and write all groups"),
    "Policy.Read.All": ("246dd0d5-5bd0-4def-940b-0421030a5b68", "Read your organization's policies"),
    "RoleManagement.Read.Directory": ("483bed4a-2ad3-4361-a73b-c83ccdbdc53c", "Read all directory RBAC settings"),
    "RoleManagement.Read.All": (
        "c7fbd983-d9aa-4fa7-84b8-17382c103bc4",
        "Read role management data for all RBAC providers",
    ),
    "RoleManagement.ReadWrite.Directory": (
        "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8",
        "Read and write all directory RBAC settings",
    ),
    "Policy.ReadWrite.Authorization": (
        "fb221be6-99f2-473f-bd32-01c6a0e9ca3b",
        "Read and write your organization's authorization policy",
    ),
    "Organization.Read.All": ("498476ce-e0fe-48b0-b801-37ba7e2685c6", "Read organization information"),
    "Organization.ReadWrite.All": ("292d869f-3427-49a8-9dab-8c70152b74e9", "Read and write organization information"),
    "Application.Read.All": ("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Read all applications"),
    "Application.ReadWrite.All": ("1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Read and write all applications"),
    "AppRoleAssignment.ReadWrite.All": (
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "Manage app permission grants and app role assignments",
    ),
}

OPERATOR_APP_ID = LOCAL_OPERATOR_CLIENT_ID
OPERATOR_SP_ID = "7d2e4f60-8a1b-4c3d-9e5f-6a7b8c9d0e1f"
OPERATOR_ROLES = ("AppRoleAssignment.ReadWrite.All", "Application.Read.All")
"""The sample tenant's automation identity for `guestwarden setup grant-permissions` and `doctor --identity`
(docs/permissions.md: "an automation identity holding AppRoleAssignment.ReadWrite.All and Application.Read.All")."""


def guestwarden_default_roles() -> tuple[str, ...]:
    """What the sample tenant's managed identity holds: exactly what shared/permissions.py requires for every flow
    in the sample configuration (LICENSE_MODE=sku; the sweep's conditional Mail.Send row included)."""
    from shared.permissions import FLOWS, GROUP_MODE, applicable_rows, features_for

    rows = applicable_rows(features_for(FLOWS))
    return tuple(sorted({row.permission for row in rows if row.when is None or GROUP_MODE not in row.when.conditions}))


def graph_service_principal(tenant_id: str) -> Json:
    return {
        "id": GRAPH_SP_ID,
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "appDisplayName": "Microsoft Graph",
        "servicePrincipalType": "Application",
        "accountEnabled": True,
        "appOwnerOrganizationId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
        "servicePrincipalNames": ["https://graph.microsoft.com", GRAPH_APP_ID],
        "tags": [],
        "appRoles": [
            {
                "allowedMemberTypes": ["Application"],
                "description": f"Allows the app to {name[0].lower()}{name[1:]}, without a signed-in user.",
                "displayName": name,
                "id": role_id,
                "isEnabled": True,
                "origin": "Application",
                "value": value,
            }
            for value, (role_id, name) in sorted(GRAPH_APP_ROLES.items())
        ],
    }


def guestwarden_service_principal(tenant_id: str) -> Json:
    return {
        "id": SIM_CREATOR_ID,
        "appId": SIM_APPLICATION_ID,
        "displayName": "guestwarden",
        "appDisplayName": None,
        "servicePrincipalType": "ManagedIdentity",
        "accountEnabled": True,
        "appOwnerOrganizationId": None,
        "servicePrincipalNames": [SIM_APPLICATION_ID],
        "tags": [],
        "appRoles": [],
    }


def new_assignment(principal: Json, resource: Json, app_role_id: str, created: datetime) -> Json:
    """An appRoleAssignment as Graph returns it (ids are opaque base64url strings, as Graph's are)."""
    return {
        "id": secrets.token_urlsafe(32)[:43],
        "deletedDateTime": None,
        "appRoleId": app_role_id,
        "createdDateTime": iso_z(created),
        "principalDisplayName": principal.get("displayName"),
        "principalId": principal["id"],
        "principalType": "ServicePrincipal",
        "resourceDisplayName": resource.get("displayName"),
        "resourceId": resource["id"],
    }


def operator_service_principal(tenant_id: str) -> Json:
    return {
        "id": OPERATOR_SP_ID,
        "appId": OPERATOR_APP_ID,
        "displayName": "guestwarden-operator",
        "appDisplayName": "guestwarden-operator",
        "servicePrincipalType": "Application",
        "accountEnabled": True,
        "appOwnerOrganizationId": tenant_id,
        "servicePrincipalNames": [OPERATOR_APP_ID],
        "tags": [],
        "appRoles": [],
    }


def role_assignments(principal: Json, graph: Json, roles: Iterable[str], now: datetime, prefix: str) -> list[Json]:
    """Deterministic appRoleAssignments granting `roles` (Graph app role values) to `principal`."""
    assignments = []
    for index, value in enumerate(roles):
        assignment = new_assignment(principal, graph, GRAPH_APP_ROLES[value][0], now)
        assignment["id"] = base64.urlsafe_b64encode(f"{prefix}-{index:02d}".encode()).decode().rstrip("=")
        assignments.append(assignment)
    return assignments


def fixture_identities(tenant_id: str, now: datetime) -> tuple[list[Json], list[Json]]:
    """The sample tenant's servicePrincipals and appRoleAssignments (deterministic ids): Graph's, guestwarden's
    managed identity (`guestwarden_default_roles`) and the operator's automation identity (`OPERATOR_ROLES`)."""
    graph = graph_service_principal(tenant_id)
    mine = guestwarden_service_principal(tenant_id)
    operator = operator_service_principal(tenant_id)
    assignments = role_assignments(mine, graph, guestwarden_default_roles(), now, "gw-fixture-assignment")
    assignments += role_assignments(operator, graph, OPERATOR_ROLES, now, "gw-operator-assignment")
    return [graph, mine, operator], assignments


def assignments_for(tenant: Json, roles: Iterable[str], principal_id: str = SIM_CREATOR_ID) -> list[Json]:
    """A tenant fixture's appRoleAssignments with the principal's Graph roles replaced by exactly `roles`
    (the other principals' assignments kept): how a test runs a flow with only the roles it declares."""
    principals = {sp["id"]: sp for sp in tenant["servicePrincipals"]}
    graph = next(sp for sp in principals.values() if sp.get("appId") == GRAPH_APP_ID)
    kept = [a for a in tenant["appRoleAssignments"] if a["principalId"] != principal_id]
    created = parse_created(tenant)
    return kept + role_assignments(principals[principal_id], graph, sorted(set(roles)), created, "gw-test-assignment")


def parse_created(tenant: Json) -> datetime:
    from local.graph_sim.clock import parse_dt

    return parse_dt(str(tenant["tenant"]["now"]))


def _b64(data: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def signing_key(tenant_id: str) -> bytes:
    """The simulator's token signing key for a tenant: stable across restarts, so a token outlives a simulator."""
    return hashlib.sha256(f"guestwarden-graph-sim:{tenant_id.lower()}".encode()).digest()


def _sign(tenant_id: str, signing_input: str) -> str:
    digest = hmac.new(signing_key(tenant_id), signing_input.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class InvalidToken(ValueError):
    """The bearer token is not one this simulator minted for this tenant (Graph: 401 InvalidAuthenticationToken)."""


def verify_token(tenant_id: str, token: str) -> Json:
    """The claims of a token this simulator minted for `tenant_id`; InvalidToken otherwise (expiry not checked)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("IDX14100: JWT is not well formed, there are no dots (.).")
    if not hmac.compare_digest(_sign(tenant_id, f"{parts[0]}.{parts[1]}"), parts[2]):
        raise InvalidToken("Access token validation failure. Invalid signature.")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise InvalidToken("Access token validation failure.") from None
    if not isinstance(claims, dict) or claims.get("aud") != "https://graph.microsoft.com":
        raise InvalidToken("Access token validation failure. Invalid audience.")
    if str(claims.get("tid", "")).lower() != tenant_id.lower():
        raise InvalidToken("Access token validation failure. Invalid issuer.")
    return claims


def mint_token(tenant_id: str, principal: Json | None, roles: Iterable[str], now: datetime) -> str:
    """An app-only access token for Graph, signed by the simulator, with the claims a real one carries."""
    roles = list(roles)
    issued = int(now.timestamp())
    claims: Json = {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(TOKEN_LIFETIME.total_seconds()),
        "idtyp": "app",
        "tid": tenant_id,
        "ver": "1.0",
    }
    if principal is not None:
        claims |= {"appid": principal.get("appId"), "oid": principal["id"], "sub": principal["id"]}
        claims["app_displayname"] = principal.get("displayName")
    if roles:
        claims["roles"] = sorted(roles)  # Entra leaves the claim out when no role is granted
    signing_input = f"{_b64({'typ': 'JWT', 'alg': 'HS256'})}.{_b64(claims)}"
    return f"{signing_input}.{_sign(tenant_id, signing_input)}"


def non_premium_tenant() -> GraphError:
    """What Graph answers when signInActivity is asked for in a tenant without Entra ID P1/P2."""
    return GraphError(
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        "Neither tenant is B2C or tenant doesn't have premium license",
    )


def wants_sign_in_activity(select: list[str] | None, filter_paths: list[str] | None = None) -> bool:
    names = [*(select or []), *(filter_paths or [])]
    return any(name.lower().split("/")[0] == "signinactivity" for name in names)


def granted_graph_roles(service_principals: dict[str, Json], assignments: list[Json], principal_id: str) -> list[str]:
    """The values of the Microsoft Graph app roles granted to one principal (what its token's `roles` carry)."""
    graph = next((sp for sp in service_principals.values() if sp.get("appId") == GRAPH_APP_ID), None)
    if graph is None:
        return []
    by_id = {role["id"]: role["value"] for role in graph.get("appRoles", [])}
    return sorted(
        by_id[a["appRoleId"]]
        for a in assignments
        if a["principalId"] == principal_id and a["resourceId"] == graph["id"] and a["appRoleId"] in by_id
    )


def token_response(store: TenantStore, client_id: str | None, now: datetime) -> Json:
    """The token endpoint's answer for an app (by appId; default: guestwarden's identity)."""
    wanted = client_id or SIM_APPLICATION_ID
    principal = next((sp for sp in store.service_principals.values() if sp.get("appId") == wanted), None)
    roles = (
        granted_graph_roles(store.service_principals, store.app_role_assignments, principal["id"]) if principal else []
    )
    lifetime = int(TOKEN_LIFETIME.total_seconds())
    token = mint_token(str(store.tenant.get("id", "")), principal, roles, now)
    return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
