"""Posture reads (issue 18): the tenant's authorization policy (who may invite guests, which role guests get), its
Conditional Access policies (paged) and its directory role assignments (with `$expand=principal`).

What each route serves is a row of local/graph_sim/contract_queries.py (AUTHORIZATION_POLICY_OPTIONS,
CA_POLICY_OPTIONS, CA_AUTHENTICATION_STRENGTH, ROLE_ASSIGNMENT_OPTIONS, ROLE_ASSIGNMENT_FILTERS); who may call them, of
contract_permissions.py. Test switches: `set_ca_page_size(sim, n)` and `set_ca_authentication_strength(sim, variant)`.
"""

from __future__ import annotations

import copy
from typing import Any

from local.graph_sim.context import SimContext
from local.graph_sim.contract_queries import (
    AUTHORIZATION_POLICY_OPTIONS,
    CA_AUTHENTICATION_STRENGTH,
    CA_POLICY_OPTIONS,
    ROLE_ASSIGNMENT_EXPANDS,
    ROLE_ASSIGNMENT_OPTIONS,
    ROLE_ASSIGNMENTS,
    QueryOptions,
)
from local.graph_sim.errors import GraphError, bad_request, unsupported_query
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.odata import check_filter, decode_token, encode_token, parse_filter, parse_select, parse_top
from local.graph_sim.resources.common import metadata
from local.graph_sim.router import Router

Json = dict[str, Any]

# authorizationpolicy.md ("always exists for the tenant") and authorizationpolicy-get.md's example: what a tenant that
# never changed it reads. allowInvitesFrom `everyone` is the default outside US Government; guestUserRoleId
# 10dae51f-... (Guest User) is the default guest access level (entra-docs users-default-permissions.md).
GUEST_USER_ROLE = "10dae51f-b6af-4016-8d66-8c2a99b929b3"
DEFAULT_AUTHORIZATION_POLICY: Json = {
    "id": "authorizationPolicy",
    "allowInvitesFrom": "everyone",
    "allowedToSignUpEmailBasedSubscriptions": True,
    "allowedToUseSSPR": True,
    "allowEmailVerifiedUsersToJoinOrganization": True,
    "allowUserConsentForRiskyApps": False,
    "blockMsolPowerShell": False,
    "displayName": "Authorization Policy",
    "description": "Used to manage authorization related settings across the company.",
    "defaultUserRolePermissions": {
        "allowedToCreateApps": True,
        "allowedToCreateSecurityGroups": True,
        "allowedToCreateTenants": True,
        "allowedToReadBitlockerKeysForOwnedDevice": True,
        "allowedToReadOtherUsers": True,
        "permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"],
    },
    "guestUserRoleId": GUEST_USER_ROLE,
}
AUTHORIZATION_POLICY_PROPERTIES = tuple(DEFAULT_AUTHORIZATION_POLICY)

CA_POLICY_PROPERTIES = (
    "id",
    "templateId",
    "displayName",
    "createdDateTime",
    "modifiedDateTime",
    "state",
    "sessionControls",
    "conditions",
    "grantControls",
)
ROLE_ASSIGNMENT_PROPERTIES = ("id", "principalId", "roleDefinitionId", "directoryScopeId", "resourceScope")


def set_ca_page_size(sim: Any, size: int) -> None:
    """The server's page size for Conditional Access policies of `sim` (a GraphSimulator): a reader must follow
    @odata.nextLink whatever it asks with `$top`."""
    if size < 1:
        raise ValueError("a page holds at least one policy")
    sim.store.ca_page_size = size


def set_ca_authentication_strength(sim: Any, variant: str) -> None:
    """How the list answers grantControls.authenticationStrength: a key of contract_queries.CA_AUTHENTICATION_STRENGTH
    ("inline", the default, or "omitted")."""
    if variant not in CA_AUTHENTICATION_STRENGTH:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(CA_AUTHENTICATION_STRENGTH)}")
    sim.store.ca_authentication_strength = variant


def check_options(req: SimRequest, options: QueryOptions) -> None:
    for option in req.query:
        if option in options.served:
            continue
        if option in options.unmodelled:
            raise GraphError(501, "NotImplemented", f"The simulator does not model {option} on {options.route}.")
        raise unsupported_query(f"Query option '{option}' is not supported.")


def project_keeping_order(obj: Json, select: list[str] | None, default: tuple[str, ...]) -> Json:
    names = select if select is not None else list(default)
    lowered = {key.lower(): key for key in obj}
    out: Json = {"id": obj.get("id")}
    for name in names:
        key = lowered.get(name.lower(), name)
        out[key] = obj.get(key)
    return out


# authorization policy -----------------------------------------------------------------------------------------------
def get_authorization_policy(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    check_options(req, AUTHORIZATION_POLICY_OPTIONS)
    policy = copy.deepcopy(DEFAULT_AUTHORIZATION_POLICY)
    policy.update(copy.deepcopy(ctx.store.authorization_policy or {}))
    select = parse_select(req.query.get("$select"))
    view = project_keeping_order(policy, select, AUTHORIZATION_POLICY_PROPERTIES)
    return json_response({"@odata.context": metadata(req, "policies/authorizationPolicy/$entity", select), **view})


# Conditional Access -------------------------------------------------------------------------------------------------
def ca_view(policy: Json, variant: str) -> Json:
    """A stored policy as the list answers it: grantControls.authenticationStrength inline (the object or null) or
    absent, per the CA_AUTHENTICATION_STRENGTH variant."""
    view = copy.deepcopy(policy)
    grant = view.get("grantControls")
    if isinstance(grant, dict):
        if variant == "omitted":
            grant.pop("authenticationStrength", None)
        else:
            grant.setdefault("authenticationStrength", None)
    return view


def list_ca_policies(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    check_options(req, CA_POLICY_OPTIONS)
    token = req.query.get("$skiptoken")
    state = decode_token(token) if token else {}
    if token and "n" not in state:
        raise bad_request("Invalid paging token.", code="Directory_ExpiredPageToken")
    select_text = state.get("s") if token else req.query.get("$select")
    top_raw = state.get("t") if token else req.query.get("$top")
    select = parse_select(select_text)
    size = min(parse_top(top_raw, ctx.store.ca_page_size, 999), ctx.store.ca_page_size)
    offset = int(state.get("n", 0))
    policies = ctx.store.ca_policies
    variant = ctx.store.ca_authentication_strength
    page = [
        project_keeping_order(ca_view(policy, variant), select, CA_POLICY_PROPERTIES)
        for policy in policies[offset : offset + size]
    ]
    body: Json = {"@odata.context": metadata(req, "identity/conditionalAccess/policies", select)}
    if offset + size < len(policies):
        nxt = encode_token({"s": select_text, "t": top_raw, "n": offset + size})
        body["@odata.nextLink"] = f"{req.base_url}/identity/conditionalAccess/policies?$skiptoken={nxt}"
    body["value"] = page
    return json_response(body)


# directory role assignments -----------------------------------------------------------------------------------------
def principal_view(ctx: SimContext, principal_id: str) -> Json | None:
    """The assignment's principal as `$expand=principal` shows it: a user, group or service principal with its
    @odata.type (rbacapplication-list-roleassignments.md, Example 1); None when the object no longer exists."""
    store = ctx.store
    user = store.users.get(principal_id)
    if user is not None:
        upn = str(user.get("userPrincipalName") or "")
        return {
            "@odata.type": "#microsoft.graph.user",
            "id": user["id"],
            "accountEnabled": user.get("accountEnabled"),
            "displayName": user.get("displayName"),
            "imAddresses": list(user.get("imAddresses") or []),
            "mail": user.get("mail"),
            "mailNickname": user.get("mailNickname") or upn.partition("@")[0],
            "userPrincipalName": upn,
            "userType": user.get("userType"),
        }
    group = store.groups.get(principal_id)
    if group is not None:
        return {
            "@odata.type": "#microsoft.graph.group",
            "id": group["id"],
            "displayName": group.get("displayName"),
            "description": group.get("description"),
            "groupTypes": list(group.get("groupTypes") or []),
            "isAssignableToRole": group.get("isAssignableToRole"),
            "mail": group.get("mail"),
            "mailEnabled": group.get("mailEnabled"),
            "securityEnabled": group.get("securityEnabled"),
        }
    sp = store.service_principals.get(principal_id)
    if sp is not None:
        return {
            "@odata.type": "#microsoft.graph.servicePrincipal",
            "id": sp["id"],
            "accountEnabled": sp.get("accountEnabled"),
            "appId": sp.get("appId"),
            "displayName": sp.get("displayName"),
            "servicePrincipalType": sp.get("servicePrincipalType"),
        }
    return None


def list_role_assignments(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    check_options(req, ROLE_ASSIGNMENT_OPTIONS)
    flt = parse_filter(req.query.get("$filter"))
    check_filter(flt, ROLE_ASSIGNMENTS, resource="UnifiedRoleAssignment", advanced=False)
    expand = [part.strip() for part in (req.query.get("$expand") or "").split(",") if part.strip()]
    for name in expand:
        if name.lower() not in ROLE_ASSIGNMENT_EXPANDS:
            raise bad_request(
                f"Could not find a property named '{name}' on type 'microsoft.graph.unifiedRoleAssignment'."
            )
        if ROLE_ASSIGNMENT_EXPANDS[name.lower()] is None:
            raise GraphError(501, "NotImplemented", f"The simulator does not model $expand={name} on roleAssignments.")
    with_principal = bool(expand)
    select = parse_select(req.query.get("$select"))
    value: list[Json] = []
    for assignment in ctx.store.role_assignments:
        if flt is not None and not flt(assignment):
            continue
        item = project_keeping_order(assignment, select, ROLE_ASSIGNMENT_PROPERTIES)
        if with_principal:
            item["principal"] = principal_view(ctx, str(assignment.get("principalId")))
        value.append(item)
    fragment = "roleManagement/directory/roleAssignments"
    shape = [*(select or []), *(["principal()"] if with_principal else [])]
    context = f"{req.base_url}/$metadata#{fragment}({','.join(shape)})" if shape else metadata(req, fragment)
    return json_response({"@odata.context": context, "value": value})


def register(router: Router) -> None:
    router.add("GET", "/policies/authorizationPolicy", get_authorization_policy)
    router.add("GET", "/identity/conditionalAccess/policies", list_ca_policies)
    router.add("GET", "/roleManagement/directory/roleAssignments", list_role_assignments)
