"""/subscribedSkus and assignLicense, with seat accounting (consumedUnits follows assignments)."""

from __future__ import annotations

from typing import Any

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.errors import bad_request
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.odata import parse_select, project
from local.graph_sim.resources.common import json_body, metadata, require_user, user_view
from local.graph_sim.router import Router
from local.graph_sim.store import direct_license_state

SKU_PROPERTIES = (
    "accountId",
    "accountName",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "id",
    "prepaidUnits",
    "servicePlans",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
)


def list_skus(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    select = parse_select(req.query.get("$select"))
    value = [project(sku, select, SKU_PROPERTIES) for sku in ctx.store.skus.values()]
    return json_response({"@odata.context": metadata(req, "subscribedSkus", select), "value": value})


def _sku_ids(entries: Any, field: str) -> list[str]:
    if not isinstance(entries, list):
        raise bad_request(f"Invalid value specified for property '{field}'.")
    ids: list[str] = []
    for entry in entries:
        raw = entry.get("skuId") if isinstance(entry, dict) else entry
        if not isinstance(raw, str):
            raise bad_request("Invalid value specified for property 'skuId' of resource 'AssignedLicense'.")
        ids.append(raw.lower())
    return ids


def assign_license(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    body = json_body(req)
    missing = [name for name in ("addLicenses", "removeLicenses") if name not in body]
    if missing:
        raise bad_request(
            "One or more parameters of the function import 'assignLicense' are missing from the request "
            f"payload. The missing parameters are: {', '.join(missing)}."
        )
    adds = body["addLicenses"]
    add_ids = _sku_ids(adds, "addLicenses")
    remove_ids = _sku_ids(body["removeLicenses"], "removeLicenses")
    store = ctx.store
    for sku_id in add_ids + remove_ids:
        if sku_id not in store.skus:
            raise bad_request(f"License {sku_id} does not correspond to a valid company License.")
    assigned = user.setdefault("assignedLicenses", [])
    held = {str(entry["skuId"]).lower() for entry in assigned}
    direct = {
        str(state.get("skuId", "")).lower()
        for state in user.get("licenseAssignmentStates") or []
        if not state.get("assignedByGroup")
    }
    for sku_id in remove_ids:
        if sku_id not in held:
            raise bad_request("User does not have a corresponding license.")
        if sku_id not in direct:  # contract_queries.LICENSE_ASSIGNMENT_STATES: only a group can take it away
            raise bad_request("User license is inherited from a group membership and it cannot be removed directly.")
    if add_ids and not user.get("usageLocation"):
        raise bad_request("License assignment cannot be done for user with invalid usage location.")
    for sku_id in add_ids:
        if sku_id not in held and store.free_seats(store.skus[sku_id]) <= 0:
            raise bad_request(
                f"Subscription with SKU {store.skus[sku_id]['skuId']} does not have any available licenses."
            )
    states = user.setdefault("licenseAssignmentStates", [])
    for sku_id in remove_ids:
        user["assignedLicenses"] = [e for e in user["assignedLicenses"] if str(e["skuId"]).lower() != sku_id]
        store.skus[sku_id]["consumedUnits"] = max(0, int(store.skus[sku_id]["consumedUnits"]) - 1)
        user["licenseAssignmentStates"] = states = [
            s for s in states if s.get("assignedByGroup") or str(s.get("skuId", "")).lower() != sku_id
        ]
    for entry, sku_id in zip(adds, add_ids, strict=True):
        disabled = entry.get("disabledPlans") if isinstance(entry, dict) else None
        current = next((e for e in user["assignedLicenses"] if str(e["skuId"]).lower() == sku_id), None)
        if current is not None:
            current["disabledPlans"] = list(disabled or [])  # same SKU again: update plans, no second seat
            continue
        sku = store.skus[sku_id]
        user["assignedLicenses"].append({"disabledPlans": list(disabled or []), "skuId": sku["skuId"]})
        sku["consumedUnits"] = int(sku["consumedUnits"]) + 1
        states.append(direct_license_state(sku["skuId"], list(disabled or []), iso_z(ctx.clock.now())))
    body_out = {"@odata.context": metadata(req, "users/$entity"), **user_view(user, None)}
    return json_response(body_out)


def register(router: Router) -> None:
    router.add("GET", "/subscribedSkus", list_skus)
    router.add("POST", "/users/{id}/assignLicense", assign_license)
