"""/groups: read, members (list, add and remove by $ref), and group-based licensing on membership."""

from __future__ import annotations

from typing import Any

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.errors import bad_request, not_found
from local.graph_sim.messages import SimRequest, SimResponse, empty_response, json_response
from local.graph_sim.odata import parse_select
from local.graph_sim.resources.common import json_body, metadata, reference_id, typed_group, typed_user
from local.graph_sim.router import Router
from local.graph_sim.store import TenantStore


def _group(ctx: SimContext, group_id: str) -> dict[str, Any]:
    group = ctx.store.groups.get(group_id)
    if group is None:
        raise not_found(group_id)
    return group


def list_groups(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    select = parse_select(req.query.get("$select"))
    value = [{k: v for k, v in typed_group(g, select).items() if k != "@odata.type"} for g in ctx.store.groups.values()]
    return json_response({"@odata.context": metadata(req, "groups", select), "value": value})


def get_group(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    group = _group(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    view = {k: v for k, v in typed_group(group, select).items() if k != "@odata.type"}
    return json_response({"@odata.context": metadata(req, "groups/$entity", select), **view})


def list_members(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    group = _group(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    members = (ctx.store.users.get(member_id) for member_id in group["members"])
    value = [typed_user(user, select) for user in members if user is not None]
    return json_response({"@odata.context": metadata(req, "directoryObjects"), "value": value})


def apply_group_licenses(store: TenantStore, group: dict[str, Any], user: dict[str, Any], now: str) -> None:
    """Group-based licensing: seats are taken when a member joins; no seat -> CountViolation on the user."""
    states = user.setdefault("licenseAssignmentStates", [])
    assigned = user.setdefault("assignedLicenses", [])
    for license_ in group.get("assignedLicenses") or []:
        sku = store.skus.get(str(license_["skuId"]).lower())
        if sku is None:
            continue
        held = any(str(e["skuId"]).lower() == sku["skuId"].lower() for e in assigned)
        state, error = "Active", "None"
        if not held:
            if store.free_seats(sku) > 0:
                assigned.append({"disabledPlans": list(license_.get("disabledPlans") or []), "skuId": sku["skuId"]})
                sku["consumedUnits"] = int(sku["consumedUnits"]) + 1
            else:
                state, error = "Error", "CountViolation"
        states.append(
            {
                "assignedByGroup": group["id"],
                "disabledPlans": list(license_.get("disabledPlans") or []),
                "error": error,
                "lastUpdatedDateTime": now,
                "skuId": sku["skuId"],
                "state": state,
            }
        )


def add_member(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    group = _group(ctx, params["id"])
    member_id = reference_id(json_body(req))
    user = ctx.store.users.get(member_id)
    if user is None:
        raise not_found(member_id)
    if member_id in group["members"]:
        raise bad_request(
            "One or more added object references already exist for the following modified properties: 'members'."
        )
    group["members"].append(member_id)
    apply_group_licenses(ctx.store, group, user, iso_z(ctx.clock.now()))
    return empty_response(204)


def remove_member(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    group = _group(ctx, params["id"])
    member_id = params["memberId"]
    if member_id not in group["members"]:
        raise not_found(member_id)
    group["members"].remove(member_id)
    user = ctx.store.users.get(member_id)
    if user is not None and group.get("assignedLicenses"):
        mine = [s for s in user.get("licenseAssignmentStates") or [] if s.get("assignedByGroup") == group["id"]]
        user["licenseAssignmentStates"] = [s for s in user["licenseAssignmentStates"] if s not in mine]
        for state in mine:
            if state["state"] != "Active":
                continue
            sku_id = str(state["skuId"]).lower()
            user["assignedLicenses"] = [e for e in user["assignedLicenses"] if str(e["skuId"]).lower() != sku_id]
            sku = ctx.store.skus.get(sku_id)
            if sku is not None:
                sku["consumedUnits"] = max(0, int(sku["consumedUnits"]) - 1)
    return empty_response(204)


def register(router: Router) -> None:
    router.add("GET", "/groups", list_groups)
    router.add("GET", "/groups/{id}", get_group)
    router.add("GET", "/groups/{id}/members", list_members)
    router.add("POST", "/groups/{id}/members/$ref", add_member)
    router.add("DELETE", "/groups/{id}/members/{memberId}/$ref", remove_member)
