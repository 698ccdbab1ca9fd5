"""/servicePrincipals: list (with `$filter=appId eq '...'`), get, and app role assignments in both directions:
`/servicePrincipals/{principal}/appRoleAssignments` (what the principal was granted) and
`/servicePrincipals/{resource}/appRoleAssignedTo` (what the resource granted to others), as Graph shapes them."""

from __future__ import annotations

from typing import Any

from local.graph_sim.context import SimContext
from local.graph_sim.errors import bad_request, not_found
from local.graph_sim.identity import new_assignment
from local.graph_sim.messages import SimRequest, SimResponse, empty_response, json_response
from local.graph_sim.odata import parse_filter, parse_select, project
from local.graph_sim.resources.common import json_body, metadata
from local.graph_sim.router import Router

Json = dict[str, Any]
SP_DEFAULT_PROPERTIES = (
    "id",
    "accountEnabled",
    "appDisplayName",
    "appId",
    "appOwnerOrganizationId",
    "appRoles",
    "displayName",
    "servicePrincipalNames",
    "servicePrincipalType",
    "tags",
)
ASSIGNMENT_SIDES = {"appRoleAssignments": "principalId", "appRoleAssignedTo": "resourceId"}


def require_sp(ctx: SimContext, key: str) -> Json:
    sp = ctx.store.service_principals.get(key)
    if sp is None:
        raise not_found(key)
    return sp


def list_service_principals(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    flt = parse_filter(req.query.get("$filter"))
    select = parse_select(req.query.get("$select"))
    found = [sp for sp in sorted(ctx.store.service_principals.values(), key=lambda s: s["id"]) if not flt or flt(sp)]
    body = {
        "@odata.context": metadata(req, "servicePrincipals", select),
        "value": [project(sp, select, SP_DEFAULT_PROPERTIES) for sp in found],
    }
    return json_response(body)


def get_service_principal(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    sp = require_sp(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    context = metadata(req, "servicePrincipals/$entity", select)
    return json_response({"@odata.context": context, **project(sp, select, SP_DEFAULT_PROPERTIES)})


def _side(params: dict[str, str]) -> str:
    side = ASSIGNMENT_SIDES.get(params["kind"])
    if side is None:
        raise bad_request(f"Resource not found for the segment '{params['kind']}'.", code="BadRequest")
    return side


def list_assignments(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    side = _side(params)
    require_sp(ctx, params["id"])
    value = [a for a in ctx.store.app_role_assignments if a[side] == params["id"]]
    context = metadata(req, f"servicePrincipals('{params['id']}')/{params['kind']}")
    return json_response({"@odata.context": context, "value": value})


def create_assignment(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    side = _side(params)
    require_sp(ctx, params["id"])
    body = json_body(req)
    for name in ("principalId", "resourceId", "appRoleId"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise bad_request(f"Invalid value specified for property '{name}' of resource 'AppRoleAssignment'.")
    if body[side] != params["id"]:
        raise bad_request(f"The {side} in the body must be the service principal in the URL ({params['id']}).")
    principal = require_sp(ctx, body["principalId"])
    resource = require_sp(ctx, body["resourceId"])
    role_ids = {role["id"] for role in resource.get("appRoles", []) if "Application" in role["allowedMemberTypes"]}
    if body["appRoleId"] not in role_ids:
        raise bad_request("Permission being assigned was not found on application", code="Request_BadRequest")
    for existing in ctx.store.app_role_assignments:
        if (existing["principalId"], existing["resourceId"], existing["appRoleId"]) == (
            principal["id"],
            resource["id"],
            body["appRoleId"],
        ):
            raise bad_request("Permission being assigned already exists on the object", code="Request_BadRequest")
    assignment = new_assignment(principal, resource, body["appRoleId"], ctx.clock.now())
    ctx.store.app_role_assignments.append(assignment)
    context = metadata(req, f"servicePrincipals('{params['id']}')/{params['kind']}/$entity")
    return json_response({"@odata.context": context, **assignment}, status=201)


def delete_assignment(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    side = _side(params)
    require_sp(ctx, params["id"])
    for index, assignment in enumerate(ctx.store.app_role_assignments):
        if assignment["id"] == params["assignment"] and assignment[side] == params["id"]:
            del ctx.store.app_role_assignments[index]
            return empty_response()
    raise not_found(params["assignment"])


def register(router: Router) -> None:
    router.add("GET", "/servicePrincipals", list_service_principals)
    router.add("GET", "/servicePrincipals/{id}", get_service_principal)
    router.add("GET", "/servicePrincipals/{id}/{kind}", list_assignments)
    router.add("POST", "/servicePrincipals/{id}/{kind}", create_assignment)
    router.add("DELETE", "/servicePrincipals/{id}/{kind}/{assignment}", delete_assignment)
