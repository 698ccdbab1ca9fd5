"""Licenses and groups: seat accounting, assignLicense errors, group membership and group-based licensing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from local.graph_sim import GraphSimulator

GUEST_SKU = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"
FULL_SKU = "f8a1db68-be16-40ed-86d5-cb42ce701560"


def sku(client: httpx.Client, sku_id: str) -> dict[str, Any]:
    return next(s for s in client.get("/subscribedSkus").json()["value"] if s["skuId"] == sku_id)


def assign(client: httpx.Client, user_id: str, add: list[str], remove: list[str] | None = None) -> httpx.Response:
    body = {"addLicenses": [{"skuId": s, "disabledPlans": []} for s in add], "removeLicenses": remove or []}
    return client.post(f"/users/{user_id}/assignLicense", json=body)


def test_subscribed_skus_report_free_guest_seats(graph_http: httpx.Client):
    guest = sku(graph_http, GUEST_SKU)
    assert guest["skuPartNumber"] == "AAD_PREMIUM" and guest["appliesTo"] == "User"
    assert guest["prepaidUnits"]["enabled"] - guest["consumedUnits"] == 3


def test_assign_license_counts_one_seat_and_is_idempotent(graph_http: httpx.Client, graph_sim: GraphSimulator):
    uid = graph_sim.named("accepted-unlicensed")
    before = sku(graph_http, GUEST_SKU)["consumedUnits"]
    first = assign(graph_http, uid, [GUEST_SKU])
    assert first.status_code == 200 and first.json()["id"] == uid
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before + 1
    assert assign(graph_http, uid, [GUEST_SKU]).status_code == 200
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before + 1
    assert assign(graph_http, uid, [], [GUEST_SKU]).status_code == 200
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before
    assert graph_sim.user(uid)["assignedLicenses"] == []


def test_assign_license_without_usage_location_is_400(graph_http: httpx.Client, graph_sim: GraphSimulator):
    response = assign(graph_http, graph_sim.named("accepted-no-location"), [GUEST_SKU])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "Request_BadRequest"
    assert error["message"] == "License assignment cannot be done for user with invalid usage location."


def test_assign_license_without_free_seats_is_400(graph_http: httpx.Client, graph_sim: GraphSimulator):
    response = assign(graph_http, graph_sim.named("accepted-unlicensed"), [FULL_SKU])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"Subscription with SKU {FULL_SKU} does not have any available licenses."
    )


def test_guest_seats_run_out(graph_http: httpx.Client, graph_sim: GraphSimulator, contoso_tenant: dict[str, Any]):
    unlicensed = [
        u["id"]
        for u in contoso_tenant["users"]
        if u["userType"] == "Guest" and u["usageLocation"] and not u["assignedLicenses"]
    ][:4]
    statuses = [assign(graph_http, uid, [GUEST_SKU]).status_code for uid in unlicensed]
    assert statuses == [200, 200, 200, 400]
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == sku(graph_http, GUEST_SKU)["prepaidUnits"]["enabled"]


def test_assign_license_unknown_sku_and_missing_parameters(graph_http: httpx.Client, graph_sim: GraphSimulator):
    uid = graph_sim.named("accepted-unlicensed")
    unknown = assign(graph_http, uid, ["11111111-1111-1111-1111-111111111111"])
    assert unknown.status_code == 400
    missing = graph_http.post(f"/users/{uid}/assignLicense", json={"addLicenses": []})
    assert missing.status_code == 400 and "removeLicenses" in missing.json()["error"]["message"]


def test_deleting_a_licensed_guest_frees_its_seat(graph_http: httpx.Client, graph_sim: GraphSimulator):
    before = sku(graph_http, GUEST_SKU)["consumedUnits"]
    uid = graph_sim.named("stale-licensed")
    graph_http.delete(f"/users/{uid}")
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before - 1
    graph_http.post(f"/directory/deletedItems/{uid}/restore")
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before


def test_group_members_add_and_duplicate(
    graph_http: httpx.Client, graph_sim: GraphSimulator, graph_http_as: Callable[..., httpx.Client]
):
    members_writer = graph_http_as("GroupMember.ReadWrite.All")  # group-mode licensing's role
    group = graph_sim.named("group-guest-licensing")
    uid = graph_sim.named("accepted-no-location")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid}"}
    before = sku(graph_http, GUEST_SKU)["consumedUnits"]
    assert members_writer.post(f"/groups/{group}/members/$ref", json=ref).status_code == 204
    again = members_writer.post(f"/groups/{group}/members/$ref", json=ref)
    assert again.status_code == 400
    assert again.json()["error"]["message"] == (
        "One or more added object references already exist for the following modified properties: 'members'."
    )
    members = members_writer.get(f"/groups/{group}/members").json()["value"]
    assert [m["id"] for m in members] == [uid]
    assert sku(graph_http, GUEST_SKU)["consumedUnits"] == before + 1
    states = graph_sim.user(uid)["licenseAssignmentStates"]
    assert states[0]["assignedByGroup"] == group and states[0]["state"] == "Active"
    member_of = graph_http.get(f"/users/{uid}/memberOf").json()["value"]
    assert member_of[0]["@odata.type"] == "#microsoft.graph.group" and member_of[0]["id"] == group
    missing = {"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/nobody"}
    assert members_writer.post(f"/groups/{group}/members/$ref", json=missing).status_code == 404


def test_exclusions_group_and_sponsors(graph_http: httpx.Client, graph_sim: GraphSimulator):
    members = graph_http.get(f"/groups/{graph_sim.named('group-exclusions')}/members").json()["value"]
    # direct members only: the nested group is listed as a member, its own members are not
    assert {m["id"] for m in members} == {
        graph_sim.named("break-glass"),
        graph_sim.named("excluded-by-group"),
        graph_sim.named("group-exclusions-nested"),
    }
    sponsors = graph_http.get(f"/users/{graph_sim.named('sponsored-stale')}/sponsors").json()["value"]
    assert {s["id"] for s in sponsors} == {graph_sim.named("sponsor-adele"), graph_sim.named("sponsor-alex")}
    assert sponsors[0]["@odata.type"] == "#microsoft.graph.user"
