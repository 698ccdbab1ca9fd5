"""/groups: read, members (list, add and remove by $ref), transitive members (nested groups flattened, paged), and
group-based licensing on membership."""

from __future__ import annotations

from typing import Any

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.contract_queries import TRANSITIVE_MEMBERS, TRANSITIVE_MEMBERS_PAGING
from local.graph_sim.errors import GraphError, bad_request, not_found, unsupported_query
from local.graph_sim.messages import SimRequest, SimResponse, empty_response, json_response
from local.graph_sim.odata import decode_token, encode_token, parse_select, parse_top
from local.graph_sim.resources.common import json_body, metadata, reference_id, typed_group, typed_user
from local.graph_sim.resources.users import is_eventual
from local.graph_sim.router import Router
from local.graph_sim.store import TenantStore

MAX_TOP = 999
"""`$top` beyond this is never a page size (parse_top); the paging mode decides up to it."""


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


def _typed(ctx: SimContext, obj: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    return typed_group(obj, select) if obj["id"] in ctx.store.groups else typed_user(obj, select)


def list_members(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    """Direct members: users and nested groups, each with its @odata.type."""
    group = _group(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    members = (ctx.store.users.get(m) or ctx.store.groups.get(m) for m in group["members"])
    value = [_typed(ctx, member, select) for member in members if member is not None]
    return json_response({"@odata.context": metadata(req, "directoryObjects"), "value": value})


def list_transitive_members(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    """Every nested member, each once (cycles end), paged by offset (contract_queries.TRANSITIVE_MEMBERS). A
    nextLink carries the first request's options, as Graph's do (paging.md)."""
    group = _group(ctx, params["id"])
    listing = TRANSITIVE_MEMBERS
    eventual = is_eventual(req)
    token = req.query.get("$skiptoken")
    state = decode_token(token) if token else {}
    if token and state.get("g") != group["id"]:
        raise bad_request("Invalid paging token.", code="Directory_ExpiredPageToken")
    count = eventual and req.query.get("$count", "").lower() == "true"
    for option in req.query:
        if option in listing.default_options:
            continue
        if option in listing.advanced_options and count:
            raise GraphError(501, "NotImplemented", f"The simulator does not model {option} on transitiveMembers.")
        raise unsupported_query(
            f"{option} on transitiveMembers needs the ConsistencyLevel: eventual header and $count=true."
            if option in listing.advanced_options
            else f"Query option '{option}' is not supported."
        )
    select_text = state.get("s") if token else req.query.get("$select")
    top_raw = state.get("t") if token else req.query.get("$top")
    select = parse_select(select_text)
    top = parse_top(top_raw, listing.default_page, MAX_TOP)
    paging = TRANSITIVE_MEMBERS_PAGING[ctx.store.transitive_members_paging]
    if top > paging.maximum and paging.refuse_above:
        raise unsupported_query(f"Invalid page size specified: '{top}'. Must be between 1 and {paging.maximum}.")
    top = min(top, paging.maximum)
    everyone = ctx.store.transitive_members(group["id"])
    offset = int(state.get("n", 0))
    page = everyone[offset : offset + top]
    body: dict[str, Any] = {"@odata.context": metadata(req, "directoryObjects", select)}
    if count and not token:
        body["@odata.count"] = len(everyone)  # on the first page only (paging.md)
    if offset + top < len(everyone):
        nxt = {"g": group["id"], "s": select_text, "t": top_raw, "n": offset + top}
        kept = "&".join(f"{k}={v}" for k, v in (("$select", select_text), ("$top", top_raw)) if v)
        link = f"{req.base_url}/groups/{group['id']}/transitiveMembers?{kept + '&' if kept else ''}"
        body["@odata.nextLink"] = f"{link}$skiptoken={encode_token(nxt)}"
    body["value"] = [_typed(ctx, member, select) for member in page]
    return json_response(body)


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
    router.add("GET", "/groups/{id}/transitiveMembers", list_transitive_members)
    router.add("POST", "/groups/{id}/members/$ref", add_member)
    router.add("DELETE", "/groups/{id}/members/{memberId}/$ref", remove_member)
