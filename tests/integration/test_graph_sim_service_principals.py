"""The simulator's /servicePrincipals and app role assignments, on the wire, shaped as Graph documents them
(appRoleAssignment: id, appRoleId, principalId, principalType, resourceId, resourceDisplayName, ...), and the
tenant-without-P1 switch."""

from __future__ import annotations

import httpx

from local.graph_sim import GraphSimulator
from local.graph_sim.identity import GRAPH_APP_ID, GRAPH_APP_ROLES, GRAPH_SP_ID, OPERATOR_APP_ID
from local.graph_sim.notifications import SIM_CREATOR_ID

ASSIGNMENT_KEYS = {
    "id",
    "deletedDateTime",
    "appRoleId",
    "createdDateTime",
    "principalDisplayName",
    "principalId",
    "principalType",
    "resourceDisplayName",
    "resourceId",
}


def test_graph_service_principal_by_app_id_carries_the_well_known_role_ids(graph_http: httpx.Client) -> None:
    found = graph_http.get("/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP_ID}'"}).json()["value"]
    assert [sp["id"] for sp in found] == [GRAPH_SP_ID]
    roles = {role["value"]: role["id"] for role in found[0]["appRoles"]}
    assert roles["User.Read.All"] == "df021288-bdef-4463-88db-98f22de89214"
    assert graph_http.get("/servicePrincipals", params={"$filter": "appId eq 'nope'"}).json()["value"] == []


def test_grant_through_app_role_assigned_to_and_remove(graph_sim: GraphSimulator) -> None:
    # granting is the operator's job (AppRoleAssignment.ReadWrite.All + Application.Read.All), not the app's
    operator = {"Authorization": f"Bearer {graph_sim.token(client_id=OPERATOR_APP_ID)}"}
    graph_http = httpx.Client(base_url=graph_sim.base_url, headers=operator)
    group_write = GRAPH_APP_ROLES["GroupMember.ReadWrite.All"][0]
    body = {"principalId": SIM_CREATOR_ID, "resourceId": GRAPH_SP_ID, "appRoleId": group_write}
    created = graph_http.post(f"/servicePrincipals/{GRAPH_SP_ID}/appRoleAssignedTo", json=body)
    assert created.status_code == 201, created.text
    assignment = created.json()
    assert set(assignment) - {"@odata.context"} == ASSIGNMENT_KEYS
    assert (assignment["principalType"], assignment["resourceDisplayName"]) == ("ServicePrincipal", "Microsoft Graph")

    # both directions see it
    mine = graph_http.get(f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments").json()["value"]
    assert assignment["id"] in {a["id"] for a in mine}
    given = graph_http.get(f"/servicePrincipals/{GRAPH_SP_ID}/appRoleAssignedTo").json()["value"]
    assert assignment["id"] in {a["id"] for a in given}

    again = graph_http.post(f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments", json=body)
    assert again.status_code == 400 and "already exists" in again.json()["error"]["message"]
    unknown = graph_http.post(
        f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments", json={**body, "appRoleId": SIM_CREATOR_ID}
    )
    assert unknown.status_code == 400

    path = f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments/{assignment['id']}"
    assert graph_http.delete(path).status_code == 204
    assert graph_http.delete(path).status_code == 404


def test_tenant_without_p1_refuses_sign_in_activity(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    user = graph_sim.named("accepted-licensed")
    assert graph_http.get(f"/users/{user}", params={"$select": "signInActivity"}).status_code == 200
    graph_sim.entra_id_p1 = False
    refused = graph_http.get("/users", params={"$select": "id,signInActivity", "$top": "1"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert graph_http.get(f"/users/{user}", params={"$select": "signInActivity"}).status_code == 403
    assert graph_http.get(f"/users/{user}").status_code == 200  # everything else still works
