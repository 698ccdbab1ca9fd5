"""/directory/deletedItems (soft-deleted users, restorable for 30 days), /organization, and
/tenantRelationships/findTenantInformationByTenantId for partner tenants."""

from __future__ import annotations

import re

from local.graph_sim.context import SimContext
from local.graph_sim.errors import bad_request, not_found
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.odata import parse_select, parse_top
from local.graph_sim.resources.common import metadata, typed_user
from local.graph_sim.router import Router

_FIND_TENANT = re.compile(r"findTenantInformationByTenantId\(tenantId='([^']*)'\)", re.IGNORECASE)


def list_deleted_users(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    ctx.store.purge_expired()
    select = parse_select(req.query.get("$select"))
    top = parse_top(req.query.get("$top"), 999, 999)
    users = sorted(ctx.store.deleted.values(), key=lambda u: u["id"])[:top]
    value = [typed_user(user, [*(select or []), "deletedDateTime"] if select else None) for user in users]
    if not select:
        for item, user in zip(value, users, strict=True):
            item["deletedDateTime"] = user.get("deletedDateTime")
    context = metadata(req, "directory/deletedItems/microsoft.graph.user", select)
    return json_response({"@odata.context": context, "value": value})


def get_deleted_item(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    ctx.store.purge_expired()
    user = ctx.store.deleted.get(params["id"])
    if user is None:
        raise not_found(params["id"])
    view = typed_user(user, parse_select(req.query.get("$select")))
    view.setdefault("deletedDateTime", user.get("deletedDateTime"))
    return json_response({"@odata.context": metadata(req, "directory/deletedItems/$entity"), **view})


def restore_deleted_item(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    ctx.store.purge_expired()
    if params["id"] not in ctx.store.deleted:
        raise not_found(params["id"])
    user = ctx.store.restore(params["id"])
    return json_response({"@odata.context": metadata(req, "directoryObjects/$entity"), **typed_user(user)})


def get_organization(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    tenant = ctx.store.tenant
    domains = [
        {
            "capabilities": "Email, OfficeCommunicationsOnline",
            "isDefault": d == tenant.get("defaultDomain"),
            "isInitial": d.endswith(".onmicrosoft.com"),
            "name": d,
            "type": "Managed",
        }
        for d in tenant.get("verifiedDomains", [])
    ]
    org = {
        "id": tenant.get("id"),
        "displayName": tenant.get("displayName"),
        "countryLetterCode": tenant.get("countryLetterCode"),
        "verifiedDomains": domains,
    }
    return json_response({"@odata.context": metadata(req, "organization"), "value": [org]})


def tenant_relationship_function(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    match = _FIND_TENANT.fullmatch(params["function"])
    if match is None:
        raise bad_request(f"Resource not found for the segment '{params['function']}'.", code="BadRequest")
    tenant_id = match.group(1).lower()
    for partner in ctx.store.partner_tenants:
        if str(partner.get("tenantId", "")).lower() == tenant_id:
            body = {
                "@odata.context": metadata(req, "microsoft.graph.tenantInformation"),
                "tenantId": partner["tenantId"],
                "federationBrandName": partner.get("federationBrandName"),
                "displayName": partner.get("displayName"),
                "defaultDomainName": partner.get("defaultDomainName"),
            }
            return json_response(body)
    raise not_found(tenant_id)


def register(router: Router) -> None:
    router.add("GET", "/directory/deletedItems/microsoft.graph.user", list_deleted_users)
    router.add("GET", "/directory/deletedItems/{id}", get_deleted_item)
    router.add("POST", "/directory/deletedItems/{id}/restore", restore_deleted_item)
    router.add("GET", "/organization", get_organization)
    router.add("GET", "/tenantRelationships/{function}", tenant_relationship_function)
