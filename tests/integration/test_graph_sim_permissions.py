"""The simulator's permission contract (local/graph_sim/contract_permissions.py), row by row on the wire: a token
holding one alternative a row names gets through, a token holding every other role the table knows gets Graph's
403 Authorization_RequestDenied. Plus the special cases (signInActivity, PATCH properties, signIns' all-of),
`$batch` checking each inner request on its own, and tokens the simulator did not mint (401)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_permissions import (
    PROPERTIES,
    ROUTES,
    PropertyPermission,
    RoutePermission,
    known_roles,
    route_for,
)
from local.graph_sim.identity import GRAPH_APP_ROLES, GRAPH_SP_ID, OPERATOR_SP_ID, mint_token
from local.graph_sim.notifications import SIM_CREATOR_ID
from local.graph_sim.resources import build_router

HttpAs = Callable[..., httpx.Client]
DENIED = {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


@dataclass(frozen=True)
class Sample:
    """One concrete request on a row's route (ids from the sample tenant, resolved per simulator)."""

    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None


def samples(sim: GraphSimulator) -> dict[str, Sample]:
    guest = sim.named("accepted-no-location")
    sponsor = sim.named("sponsor-adele")
    group = sim.named("group-exclusions")
    deleted = sim.named("deleted-guest")
    partner = sim.store.partner_tenants[0]["tenantId"]
    signin = sim.store.signins[0]["id"]
    mailer = sim.named("mailer")
    assignment = next(a["id"] for a in sim.store.app_role_assignments if a["principalId"] == SIM_CREATOR_ID)
    member = sim.store.groups[group]["members"][0]
    role = GRAPH_APP_ROLES["Group.Read.All"][0]
    grant = {"principalId": OPERATOR_SP_ID, "resourceId": GRAPH_SP_ID, "appRoleId": role}
    mail = {"message": {"subject": "s", "toRecipients": [{"emailAddress": {"address": "a@example.com"}}]}}
    sub = "00000000-0000-0000-0000-000000000001"
    pending = sim.user("pending-old")
    invitation = {"invitedUserEmailAddress": pending["mail"], "inviteRedirectUrl": "https://myapps.microsoft.com"}
    return {
        "GET /users": Sample("/users", {"$filter": "userType eq 'Guest'"}),
        "GET /users/$count": Sample("/users/$count"),
        "GET /users/{id}": Sample(f"/users/{guest}"),
        "POST /users": Sample("/users", body={"displayName": "x"}),
        "PATCH /users/{id}": Sample(f"/users/{guest}", body={"displayName": "Renamed"}),
        "DELETE /users/{id}": Sample(f"/users/{guest}"),
        "POST /users/{id}/revokeSignInSessions": Sample(f"/users/{guest}/revokeSignInSessions"),
        "GET /users/{id}/sponsors": Sample(f"/users/{guest}/sponsors"),
        "POST /users/{id}/sponsors/$ref": Sample(
            f"/users/{guest}/sponsors/$ref", body={"@odata.id": f"https://graph.microsoft.com/v1.0/users/{sponsor}"}
        ),
        "DELETE /users/{id}/sponsors/{sponsorId}/$ref": Sample(f"/users/{guest}/sponsors/{sponsor}/$ref"),
        "GET /users/{id}/memberOf": Sample(f"/users/{member}/memberOf"),
        "GET /users/delta": Sample("/users/delta"),
        "GET /users/delta()": Sample("/users/delta()"),
        "GET /subscribedSkus": Sample("/subscribedSkus"),
        "POST /users/{id}/assignLicense": Sample(
            f"/users/{guest}/assignLicense", body={"addLicenses": [], "removeLicenses": []}
        ),
        "GET /groups": Sample("/groups"),
        "GET /groups/{id}": Sample(f"/groups/{group}"),
        "GET /groups/{id}/members": Sample(f"/groups/{group}/members"),
        "GET /groups/{id}/transitiveMembers": Sample(f"/groups/{group}/transitiveMembers", {"$select": "id"}),
        "POST /groups/{id}/members/$ref": Sample(
            f"/groups/{group}/members/$ref", body={"@odata.id": f"https://graph.microsoft.com/v1.0/users/{guest}"}
        ),
        "DELETE /groups/{id}/members/{memberId}/$ref": Sample(f"/groups/{group}/members/{member}/$ref"),
        "GET /directory/deletedItems/microsoft.graph.user": Sample("/directory/deletedItems/microsoft.graph.user"),
        "GET /directory/deletedItems/{id}": Sample(f"/directory/deletedItems/{deleted}"),
        "POST /directory/deletedItems/{id}/restore": Sample(f"/directory/deletedItems/{deleted}/restore"),
        "GET /organization": Sample("/organization"),
        "GET /tenantRelationships/findTenantInformationByTenantId(tenantId={value})": Sample(
            f"/tenantRelationships/findTenantInformationByTenantId(tenantId='{partner}')"
        ),
        "GET /auditLogs/signIns": Sample("/auditLogs/signIns"),
        "GET /auditLogs/signIns/{id}": Sample(f"/auditLogs/signIns/{signin}"),
        "POST /users/{id}/sendMail": Sample(f"/users/{mailer}/sendMail", body=mail),
        "POST /invitations": Sample("/invitations", body=invitation),
        "POST /subscriptions": Sample("/subscriptions", body={"resource": "/users"}),
        "GET /subscriptions": Sample("/subscriptions"),
        "GET /subscriptions/{id}": Sample(f"/subscriptions/{sub}"),
        "PATCH /subscriptions/{id}": Sample(f"/subscriptions/{sub}", body={"expirationDateTime": "x"}),
        "DELETE /subscriptions/{id}": Sample(f"/subscriptions/{sub}"),
        "POST /subscriptions/{id}/reauthorize": Sample(f"/subscriptions/{sub}/reauthorize"),
        "GET /servicePrincipals": Sample("/servicePrincipals"),
        "GET /servicePrincipals/{id}": Sample(f"/servicePrincipals/{GRAPH_SP_ID}"),
        "GET /servicePrincipals/{id}/appRoleAssignments": Sample(
            f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments"
        ),
        "GET /servicePrincipals/{id}/appRoleAssignedTo": Sample(f"/servicePrincipals/{GRAPH_SP_ID}/appRoleAssignedTo"),
        "POST /servicePrincipals/{id}/appRoleAssignments": Sample(
            f"/servicePrincipals/{OPERATOR_SP_ID}/appRoleAssignments", body=grant
        ),
        "POST /servicePrincipals/{id}/appRoleAssignedTo": Sample(
            f"/servicePrincipals/{GRAPH_SP_ID}/appRoleAssignedTo", body=grant
        ),
        "DELETE /servicePrincipals/{id}/appRoleAssignments/{assignmentId}": Sample(
            f"/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments/{assignment}"
        ),
        "DELETE /servicePrincipals/{id}/appRoleAssignedTo/{assignmentId}": Sample(
            f"/servicePrincipals/{GRAPH_SP_ID}/appRoleAssignedTo/{assignment}"
        ),
        "GET /policies/authorizationPolicy": Sample("/policies/authorizationPolicy"),
        "GET /identity/conditionalAccess/policies": Sample("/identity/conditionalAccess/policies"),
        "GET /roleManagement/directory/roleAssignments": Sample(
            "/roleManagement/directory/roleAssignments", {"$expand": "principal"}
        ),
        "POST /$batch": Sample("/$batch", body={"requests": [{"id": "1", "method": "GET", "url": "/organization"}]}),
    }


def send(client: httpx.Client, row: RoutePermission, sample: Sample) -> httpx.Response:
    return client.request(row.method, sample.path, params=sample.params, json=sample.body)


def assert_denied(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert {k: error[k] for k in ("code", "message")} == DENIED
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}


def without(row_roles: set[str]) -> list[str]:
    """Every role the table knows except these: the strongest token that still must be refused."""
    return sorted(known_roles() - row_roles)


ROUTE_IDS = [row.route for row in ROUTES]


def test_every_route_the_simulator_serves_has_a_row_and_a_sample(graph_sim: GraphSimulator) -> None:
    examples = samples(graph_sim)
    assert set(examples) == set(ROUTE_IDS)
    for route in build_router().routes:
        concrete = route.template.replace("{kind}", "appRoleAssignments").replace("{assignment}", "x")
        concrete = concrete.replace("{function}", "findTenantInformationByTenantId(tenantId='x')")
        for part in ("{id}", "{sponsorId}", "{memberId}"):
            concrete = concrete.replace(part, "x")
        assert route_for(route.method, concrete) is not None, route.key


def test_every_role_in_the_table_is_a_graph_app_role_with_its_id() -> None:
    assert known_roles() <= set(GRAPH_APP_ROLES)


def test_every_row_cites_its_source() -> None:
    rows: list[RoutePermission | PropertyPermission] = [*ROUTES, *PROPERTIES]
    for row in rows:
        assert "@7a4530b" in row.source or "microsoft-graph-docs-contrib" in row.source, row


@pytest.mark.parametrize("route", ROUTE_IDS)
def test_each_alternative_of_a_row_is_accepted(graph_sim: GraphSimulator, graph_http_as: HttpAs, route: str) -> None:
    row = next(r for r in ROUTES if r.route == route)
    sample = samples(graph_sim)[route]
    for grant in row.grants:
        response = send(graph_http_as(*sorted(grant)), row, sample)
        assert response.status_code not in (401, 403), (sorted(grant), response.text)


@pytest.mark.parametrize("route", [r.route for r in ROUTES if r.grants != (frozenset(),)])
def test_a_token_without_the_rows_roles_is_refused_like_graph(
    graph_sim: GraphSimulator, graph_http_as: HttpAs, route: str
) -> None:
    row = next(r for r in ROUTES if r.route == route)
    sample = samples(graph_sim)[route]
    named = {role for grant in row.grants for role in grant}
    before = graph_sim.store.version
    assert_denied(send(graph_http_as(*without(named)), row, sample))
    assert graph_sim.denied[row.route] == 1
    assert graph_sim.store.version == before  # refused before the handler: nothing changed


def test_sign_ins_need_both_audit_log_and_directory_read(graph_http_as: HttpAs) -> None:
    assert_denied(graph_http_as("AuditLog.Read.All").get("/auditLogs/signIns"))
    assert_denied(graph_http_as("Directory.Read.All").get("/auditLogs/signIns"))
    assert graph_http_as("AuditLog.Read.All", "Directory.Read.All").get("/auditLogs/signIns").status_code == 200


@pytest.mark.parametrize("option", ["$select", "$filter"])
def test_sign_in_activity_needs_audit_log_in_addition(graph_http_as: HttpAs, option: str) -> None:
    value = "id,signInActivity" if option == "$select" else "signInActivity/lastSignInDateTime le 2020-01-01T00:00:00Z"
    params = {option: value}
    assert_denied(graph_http_as("User.Read.All").get("/users", params=params))
    assert_denied(graph_http_as("AuditLog.Read.All").get("/users", params=params))  # the route's own grant too
    assert graph_http_as("User.Read.All", "AuditLog.Read.All").get("/users", params=params).status_code == 200
    assert graph_http_as("User.Read.All").get("/users", params={"$select": "id,displayName"}).status_code == 200


def test_sign_in_activity_on_one_user(graph_sim: GraphSimulator, graph_http_as: HttpAs) -> None:
    path = f"/users/{graph_sim.named('stale-all')}"
    assert_denied(graph_http_as("User.Read.All").get(path, params={"$select": "signInActivity"}))
    assert (
        graph_http_as("User.Read.All", "AuditLog.Read.All").get(path, params={"$select": "signInActivity"}).is_success
    )


def test_patch_account_enabled_is_granted_by_enable_disable_with_user_read(
    graph_sim: GraphSimulator, graph_http_as: HttpAs
) -> None:
    path = f"/users/{graph_sim.named('stale-all')}"
    narrow = graph_http_as("User.EnableDisableAccount.All", "User.Read.All")
    assert narrow.patch(path, json={"accountEnabled": False}).status_code == 204
    assert graph_sim.user("stale-all")["accountEnabled"] is False
    assert_denied(graph_http_as("User.EnableDisableAccount.All").patch(path, json={"accountEnabled": True}))
    assert_denied(narrow.patch(path, json={"usageLocation": "US"}))
    assert_denied(narrow.patch(path, json={"accountEnabled": True, "usageLocation": "US"}))
    assert_denied(narrow.patch(path, json={"accountEnabled": True, "displayName": "x"}))  # displayName: the route's
    assert graph_http_as("User.ReadWrite.All").patch(path, json={"accountEnabled": True}).status_code == 204


def test_patch_usage_location_needs_user_read_write(graph_sim: GraphSimulator, graph_http_as: HttpAs) -> None:
    path = f"/users/{graph_sim.named('accepted-no-location')}"
    assert_denied(
        graph_http_as("User.Read.All", "LicenseAssignment.ReadWrite.All").patch(path, json={"usageLocation": "US"})
    )
    assert graph_http_as("User.ReadWrite.All").patch(path, json={"usageLocation": "US"}).status_code == 204
    assert graph_sim.user("accepted-no-location")["usageLocation"] == "US"


def test_group_members_are_not_granted_by_user_read_all(graph_sim: GraphSimulator, graph_http_as: HttpAs) -> None:
    path = f"/groups/{graph_sim.named('group-exclusions')}/members"
    assert_denied(graph_http_as("User.Read.All").get(path))
    assert graph_http_as("GroupMember.Read.All").get(path).status_code == 200


def test_subscribed_skus_are_not_granted_by_license_assignment(graph_http_as: HttpAs) -> None:
    assert_denied(graph_http_as("LicenseAssignment.ReadWrite.All").get("/subscribedSkus"))
    assert graph_http_as("Organization.Read.All").get("/subscribedSkus").status_code == 200


def test_resetting_a_redemption_needs_more_than_inviting(graph_sim: GraphSimulator, graph_http_as: HttpAs) -> None:
    """invitation-post.md: User.Invite.All invites (and re-sends); resetRedemption needs User.ReadWrite.All."""
    guest = graph_sim.user("accepted-no-location")
    body = {"invitedUserEmailAddress": guest["mail"], "inviteRedirectUrl": "https://myapps.microsoft.com"}
    assert graph_http_as("User.Invite.All").post("/invitations", json=body).status_code == 201
    reset = {**body, "resetRedemption": True, "invitedUser": {"id": guest["id"]}}
    assert_denied(graph_http_as("User.Invite.All").post("/invitations", json=reset))
    assert graph_http_as("User.ReadWrite.All").post("/invitations", json=reset).status_code == 201
    assert graph_sim.user("accepted-no-location")["externalUserState"] == "PendingAcceptance"


def test_batch_checks_each_inner_request_on_its_own(graph_sim: GraphSimulator, graph_http_as: HttpAs) -> None:
    group = graph_sim.named("group-exclusions")
    body = {
        "requests": [
            {"id": "users", "method": "GET", "url": "/users?$select=id&$top=1"},
            {"id": "members", "method": "GET", "url": f"/groups/{group}/members"},
            {"id": "skus", "method": "GET", "url": "/subscribedSkus"},
        ]
    }
    response = graph_http_as("User.Read.All").post("/$batch", json=body)
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert by_id["users"]["status"] == 200
    for denied in ("members", "skus"):
        assert by_id[denied]["status"] == 403
        assert by_id[denied]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert graph_sim.denied == {"GET /groups/{id}/members": 1, "GET /subscribedSkus": 1}


def test_a_token_the_simulator_did_not_mint_is_401(graph_sim: GraphSimulator) -> None:
    other_tenant = mint_token("11111111-2222-3333-4444-555555555555", None, ["User.Read.All"], graph_sim.clock.now())
    header, payload, signature = graph_sim.token(roles=["User.Read.All"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_claims = {**claims, "roles": sorted(known_roles())}
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("=")
    for token in ("test-token", other_tenant, f"{header}.{forged}.{signature}", f"{header}.{payload}."):
        response = httpx.get(f"{graph_sim.base_url}/users", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_the_token_endpoint_issues_what_the_fixture_grants_and_it_is_enforced(graph_sim: GraphSimulator) -> None:
    token = httpx.post(graph_sim.token_url, data={"grant_type": "client_credentials"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{graph_sim.base_url}/subscribedSkus", headers=headers).status_code == 200
    # guestwarden's identity is not an operator: it cannot grant itself roles
    grant = {
        "principalId": SIM_CREATOR_ID,
        "resourceId": GRAPH_SP_ID,
        "appRoleId": GRAPH_APP_ROLES["Group.Read.All"][0],
    }
    url = f"{graph_sim.base_url}/servicePrincipals/{SIM_CREATOR_ID}/appRoleAssignments"
    assert_denied(httpx.post(url, json=grant, headers=headers))
