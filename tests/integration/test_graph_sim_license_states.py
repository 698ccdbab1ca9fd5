"""contract_queries.LICENSE_ASSIGNMENT_STATES, both ways: licenseAssignmentStates only on $select, a direct
assignment without assignedByGroup, a group's with it; assignLicense removes a direct licence and refuses one held
only through a group."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_queries import LICENSE_ASSIGNMENT_STATES


def test_states_are_served_on_select_only_and_say_which_are_direct(
    graph_http: httpx.Client, graph_sim: GraphSimulator
) -> None:
    assert all(page.endswith(".md") for page in LICENSE_ASSIGNMENT_STATES.values())
    lars = graph_sim.named("stale-licensed")
    assert "licenseAssignmentStates" not in graph_http.get(f"/users/{lars}").json()
    states = graph_http.get(f"/users/{lars}", params={"$select": "id,licenseAssignmentStates"}).json()[
        "licenseAssignmentStates"
    ]
    assert states and all(state["assignedByGroup"] is None for state in states)


def test_assign_license_removes_a_direct_licence_and_refuses_a_group_one(
    graph_http_as: Callable[..., httpx.Client], graph_sim: GraphSimulator
) -> None:
    graph_http = graph_http_as("User.Read.All", "GroupMember.ReadWrite.All", "LicenseAssignment.ReadWrite.All")
    lars, sven = graph_sim.named("stale-licensed"), graph_sim.named("stale-all")
    group = graph_sim.named("group-guest-licensing")
    sku = graph_sim.user(lars)["assignedLicenses"][0]["skuId"]
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{sven}"}
    assert graph_http.post(f"/groups/{group}/members/$ref", json=ref).status_code == 204
    states = graph_http.get(f"/users/{sven}", params={"$select": "licenseAssignmentStates"}).json()
    assert {s["assignedByGroup"] for s in states["licenseAssignmentStates"]} == {group}

    body = {"addLicenses": [], "removeLicenses": [sku]}
    refused = graph_http.post(f"/users/{sven}/assignLicense", json=body)
    assert refused.status_code == 400 and "inherited from a group" in refused.text
    assert graph_http.post(f"/users/{lars}/assignLicense", json=body).status_code == 200
    assert graph_sim.user(lars)["assignedLicenses"] == []
