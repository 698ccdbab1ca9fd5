"""The simulator's posture routes (issue 18) on the wire: the authorization policy, Conditional Access policies (paged,
authenticationStrength inline or omitted, 1 request/s) and directory role assignments ($filter rows, $expand=principal),
each contract row both ways, Microsoft's documented shapes, and the posture facts of the two sample tenants that the
e2e tests rely on (docs/tenant-fixture.md, "Posture")."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.fixtures.posture import GLOBAL_ADMINISTRATOR, GUEST_INVITER, assignment_id
from local.graph_sim import GraphSimulator
from local.graph_sim.clock import parse_dt
from local.graph_sim.contract_permissions import ROUTES, known_roles
from local.graph_sim.contract_queries import (
    CA_AUTHENTICATION_STRENGTH,
    CA_POLICY_OPTIONS,
    ROLE_ASSIGNMENT_FILTERS,
)
from local.graph_sim.contract_throttling import CONDITIONAL_ACCESS
from local.graph_sim.resources.policies import set_ca_authentication_strength, set_ca_page_size
from tests.fixtures.graph_sim import bearer
from tests.integration import test_graph_sim_shapes as shapes
from tests.integration.test_graph_sim_sdk import build_client

HttpAs = Callable[..., httpx.Client]
ROOT = Path(__file__).resolve().parents[2]
WEAK = ROOT / "local" / "fixtures" / "contoso-weak-posture.json"
AUTHZ = "/policies/authorizationPolicy"
CA = "/identity/conditionalAccess/policies"
ROLES = "/roleManagement/directory/roleAssignments"
POSTURE_ROUTES = [f"GET {AUTHZ}", f"GET {CA}", f"GET {ROLES}"]
DENIED = {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


@pytest.fixture
def weak_tenant() -> dict[str, Any]:
    return json.loads(WEAK.read_text(encoding="utf-8"))


@pytest.fixture
def weak_sim(weak_tenant: dict[str, Any]) -> Iterator[GraphSimulator]:
    sim = GraphSimulator(weak_tenant, frozen=True).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def unthrottled(graph_sim: GraphSimulator) -> GraphSimulator:
    """The CA quota off, for tests that read the list more than once a second (it has its own tests below)."""
    graph_sim.throttling.configure(conditional_access_per_s=None)
    return graph_sim


def client_of(sim: GraphSimulator) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers=bearer(sim.token()))


# permissions: each row both ways ------------------------------------------------------------------------------------
def row(route: str) -> Any:
    return next(r for r in ROUTES if r.route == route)


@pytest.mark.parametrize("route", POSTURE_ROUTES)
def test_each_alternative_of_a_posture_row_is_granted(graph_sim: GraphSimulator, graph_http_as: HttpAs, route: str):
    path = route.split(" ", 1)[1]
    for grant in row(route).grants:
        graph_sim.throttling.reset()
        response = graph_http_as(*sorted(grant)).get(path)
        assert response.status_code == 200, (sorted(grant), response.text)


@pytest.mark.parametrize("route", POSTURE_ROUTES)
def test_a_token_without_a_posture_rows_roles_is_refused(graph_sim: GraphSimulator, graph_http_as: HttpAs, route: str):
    named = {role for grant in row(route).grants for role in grant}
    response = graph_http_as(*sorted(known_roles() - named)).get(route.split(" ", 1)[1])
    assert response.status_code == 403, response.text
    assert {k: response.json()["error"][k] for k in ("code", "message")} == DENIED
    assert graph_sim.denied[route] == 1


def test_the_rows_name_what_the_docs_list():
    assert row(f"GET {AUTHZ}").grants == (frozenset({"Policy.Read.All"}), frozenset({"Policy.ReadWrite.Authorization"}))
    assert row(f"GET {CA}").grants == (frozenset({"Policy.Read.All"}),)
    assert {role for grant in row(f"GET {ROLES}").grants for role in grant} == {
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "Directory.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.ReadWrite.All",
    }
    for route in POSTURE_ROUTES:
        assert "microsoft-graph-docs-contrib" in row(route).source


def test_the_sample_identity_holds_the_posture_roles(graph_sim: GraphSimulator, graph_http: httpx.Client):
    assert graph_http.get(AUTHZ).status_code == 200
    assert graph_http.get(CA).status_code == 200
    assert graph_http.get(ROLES).status_code == 200


# authorization policy -----------------------------------------------------------------------------------------------
def test_authorization_policy_is_a_single_object(graph_http: httpx.Client):
    body = graph_http.get(AUTHZ).json()
    assert "value" not in body
    assert body["@odata.context"].endswith("/$metadata#policies/authorizationPolicy/$entity")
    assert body["id"] == "authorizationPolicy"
    assert body["allowInvitesFrom"] == "adminsAndGuestInviters"
    assert body["guestUserRoleId"] == "2af84b1e-32c8-42b7-82bc-daa82404023b"
    assert isinstance(body["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"], list)


def test_a_tenant_that_never_changed_it_reads_microsofts_defaults(
    contoso_tenant: dict[str, Any], graph_sim_factory: Callable[[dict[str, Any]], GraphSimulator]
):
    tenant = copy.deepcopy(contoso_tenant)
    del tenant["authorizationPolicy"]
    sim = graph_sim_factory(tenant)
    with client_of(sim) as client:
        body = client.get(AUTHZ).json()
    assert body["allowInvitesFrom"] == "everyone"
    assert body["guestUserRoleId"] == "10dae51f-b6af-4016-8d66-8c2a99b929b3"


def test_authorization_policy_query_options(graph_http: httpx.Client):
    selected = graph_http.get(AUTHZ, params={"$select": "allowInvitesFrom"}).json()
    assert set(selected) == {"@odata.context", "id", "allowInvitesFrom"}
    assert selected["@odata.context"].endswith("#policies/authorizationPolicy(allowInvitesFrom)/$entity")
    refused = graph_http.get(AUTHZ, params={"$filter": "id eq 'authorizationPolicy'"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "Request_UnsupportedQuery"


# Conditional Access -------------------------------------------------------------------------------------------------
def test_ca_policies_are_a_collection_in_the_fixtures_order(unthrottled: GraphSimulator, graph_http: httpx.Client):
    body = graph_http.get(CA).json()
    assert body["@odata.context"].endswith("/$metadata#identity/conditionalAccess/policies")
    assert [(p["displayName"], p["state"]) for p in body["value"]] == [
        ("MFA for guest and external users", "enabled"),
        ("Block high sign-in risk", "enabled"),
        ("Require compliant device for employees", "enabled"),
        ("Old: MFA for admins", "disabled"),
    ]
    mfa = body["value"][0]
    guests = mfa["conditions"]["users"]["includeGuestsOrExternalUsers"]
    assert guests["guestOrExternalUserTypes"].split(",") == [
        "internalGuest",
        "b2bCollaborationGuest",
        "b2bCollaborationMember",
        "b2bDirectConnectUser",
        "otherExternalUser",
        "serviceProvider",
    ]
    assert guests["externalTenants"] == {
        "@odata.type": "#microsoft.graph.conditionalAccessAllExternalTenants",
        "membershipKind": "all",
    }
    block = body["value"][1]
    assert block["conditions"]["users"]["excludeGroups"] == [unthrottled.named("group-all-guests")]
    assert block["conditions"]["signInRiskLevels"] == ["high"]


def test_ca_list_is_paged_by_the_server(unthrottled: GraphSimulator, graph_http: httpx.Client):
    set_ca_page_size(unthrottled, 2)
    seen: list[str] = []
    page = graph_http.get(CA, params={"$select": "id,displayName,state"}).json()
    pages = 1
    while True:
        seen += [p["displayName"] for p in page["value"]]
        assert set(page["value"][0]) == {"id", "displayName", "state"}  # nextLinks keep $select
        if "@odata.nextLink" not in page:
            break
        page = graph_http.get(page["@odata.nextLink"]).json()
        pages += 1
    assert pages == 2 and len(seen) == 4
    # $top can only make a page smaller than the server's
    assert len(graph_http.get(CA, params={"$top": "1"}).json()["value"]) == 1
    assert len(graph_http.get(CA, params={"$top": "50"}).json()["value"]) == 2


async def test_msgraph_sdk_follows_the_ca_next_link(unthrottled: GraphSimulator):
    set_ca_page_size(unthrottled, 2)
    client, _ = build_client(unthrottled)
    first = await client.identity.conditional_access.policies.get()
    assert first is not None and first.odata_next_link
    names = [p.display_name for p in first.value or []]
    second = await client.identity.conditional_access.policies.with_url(first.odata_next_link).get()
    assert second is not None and not second.odata_next_link
    names += [p.display_name for p in second.value or []]
    assert len(names) == 4
    mfa = (first.value or [])[0]
    assert mfa.grant_controls is not None and mfa.grant_controls.authentication_strength is not None
    assert mfa.grant_controls.authentication_strength.requirements_satisfied is not None
    guests = mfa.conditions.users.include_guests_or_external_users  # type: ignore[union-attr]
    assert guests is not None and guests.external_tenants is not None
    assert guests.external_tenants.odata_type == "#microsoft.graph.conditionalAccessAllExternalTenants"


@pytest.mark.parametrize("variant", sorted(CA_AUTHENTICATION_STRENGTH))
def test_authentication_strength_variants(unthrottled: GraphSimulator, graph_http: httpx.Client, variant: str):
    set_ca_authentication_strength(unthrottled, variant)
    grants = [p["grantControls"] for p in graph_http.get(CA).json()["value"]]
    if variant == "inline":
        assert grants[0]["authenticationStrength"]["requirementsSatisfied"] == "mfa"
        assert grants[0]["authenticationStrength"]["id"] == "00000000-0000-0000-0000-000000000002"
        assert all("authenticationStrength" in g for g in grants)
        assert [g["authenticationStrength"] for g in grants[1:]] == [None, None, None]
    else:
        assert all("authenticationStrength" not in g for g in grants)
    assert grants[0]["builtInControls"] == []  # the MFA policy asks for a strength, not the mfa control


def test_authentication_strength_variant_names_are_checked(graph_sim: GraphSimulator):
    with pytest.raises(ValueError, match="unknown variant"):
        set_ca_authentication_strength(graph_sim, "expanded")
    assert graph_sim.store.ca_authentication_strength == "inline"


@pytest.mark.parametrize(
    ("option", "value", "status"),
    [
        *((name, "1" if name == "$top" else "id", 200) for name in sorted(CA_POLICY_OPTIONS.served - {"$skiptoken"})),
        *(
            (name, "state eq 'enabled'" if name == "$filter" else "1", 501)
            for name in sorted(CA_POLICY_OPTIONS.unmodelled)
        ),
        ("$expand", "grantControls", 400),
        ("$search", '"mfa"', 400),
    ],
)
def test_ca_query_options(unthrottled: GraphSimulator, graph_http: httpx.Client, option: str, value: str, status: int):
    response = graph_http.get(CA, params={option: value})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_ca_quota_is_one_request_a_second_per_tenant_without_retry_after(
    graph_sim: GraphSimulator, graph_http_as: HttpAs
):
    first, other_app = graph_http_as("Policy.Read.All"), graph_http_as("Policy.Read.All", "User.Read.All")
    assert first.get(CA).status_code == 200
    refused = other_app.get(CA)  # per tenant for all apps: another token shares the window
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert "Retry-After" not in refused.headers
    assert refused.headers["x-ms-throttle-information"] == CONDITIONAL_ACCESS.name
    assert first.get(AUTHZ).status_code == 200  # the quota covers conditionalAccessPolicy, not other policies
    time.sleep(CONDITIONAL_ACCESS.window_s + 0.05)
    assert first.get(CA).status_code == 200
    graph_sim.throttling.configure(conditional_access_per_s=None)
    assert all(first.get(CA).status_code == 200 for _ in range(3))


def test_the_authorization_policy_is_in_the_identity_bucket(graph_sim: GraphSimulator, graph_http_as: HttpAs):
    """includes/throttling-identity-and-access.md lists "Policy base": a GET costs 1 resource unit."""
    graph_sim.throttling.configure(identity_ru_per_10s=2)
    client = graph_http_as("Policy.Read.All")
    assert [client.get(AUTHZ).status_code for _ in range(3)] == [200, 200, 429]
    assert graph_sim.throttling.throttled == {"identity": 1}
    roles = graph_http_as("RoleManagement.Read.Directory")
    assert roles.get(ROLES).status_code == 200  # role assignments are not in it


# directory role assignments -----------------------------------------------------------------------------------------
def test_role_assignments_without_expand(graph_sim: GraphSimulator, graph_http: httpx.Client):
    body = graph_http.get(ROLES).json()
    assert body["@odata.context"].endswith("/$metadata#roleManagement/directory/roleAssignments")
    assert all("principal" not in item for item in body["value"])
    assert {(a["roleDefinitionId"], a["principalId"]) for a in body["value"]} == {
        (GLOBAL_ADMINISTRATOR, graph_sim.named("admin-megan")),
        (GUEST_INVITER, graph_sim.named("sponsor-adele")),
        (GUEST_INVITER, graph_sim.named("group-partner-inviters")),
    }
    assert all(a["directoryScopeId"] == "/" and a["resourceScope"] == "/" for a in body["value"])


@pytest.mark.parametrize("filter_row", ROLE_ASSIGNMENT_FILTERS, ids=lambda r: r.prop)
def test_each_role_assignment_filter_row_both_ways(graph_sim: GraphSimulator, graph_http: httpx.Client, filter_row):
    name = "roleDefinitionId" if filter_row.prop == "roledefinitionid" else "principalId"
    value = GUEST_INVITER if name == "roleDefinitionId" else graph_sim.named("sponsor-adele")
    served = graph_http.get(ROLES, params={"$filter": f"{name} eq '{value}'"})
    assert served.status_code == 200
    assert served.json()["value"] and all(a[name] == value for a in served.json()["value"])
    for refused_filter in (
        f"{name} ne '{value}'",
        f"startswith({name}, 'a')",
        f"{name} in ('{value}')",
        f"{name} eq '{value}' and directoryScopeId eq '/'",
        f"{name} eq '{value}' or {name} eq '{value}'",
    ):
        response = graph_http.get(ROLES, params={"$filter": refused_filter})
        assert response.status_code == 400, refused_filter
        assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


@pytest.mark.parametrize("prop", ["directoryScopeId", "id", "appScopeId", "principal/displayName"])
def test_other_role_assignment_filters_are_refused(graph_http: httpx.Client, prop: str):
    response = graph_http.get(ROLES, params={"$filter": f"{prop} eq '/'"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_expand_principal_of_users_and_groups(graph_sim: GraphSimulator, graph_http: httpx.Client):
    body = graph_http.get(
        ROLES, params={"$filter": f"roleDefinitionId eq '{GUEST_INVITER}'", "$expand": "principal"}
    ).json()
    assert body["@odata.context"].endswith("/$metadata#roleManagement/directory/roleAssignments(principal())")
    principals = {item["principal"]["id"]: item["principal"] for item in body["value"]}
    adele = principals[graph_sim.named("sponsor-adele")]
    assert adele["@odata.type"] == "#microsoft.graph.user"
    assert {k: adele[k] for k in ("displayName", "userType", "accountEnabled", "userPrincipalName", "mail")} == {
        "displayName": "Adele Vance",
        "userType": "Member",
        "accountEnabled": True,
        "userPrincipalName": "adele@contoso.onmicrosoft.com",
        "mail": "adele@contoso.com",
    }
    group = principals[graph_sim.named("group-partner-inviters")]
    assert group["@odata.type"] == "#microsoft.graph.group"
    assert group["displayName"] == "Partner Inviters" and group["isAssignableToRole"] is True
    members = graph_http.get(f"/groups/{group['id']}/members").json()["value"]
    assert [m["id"] for m in members] == [graph_sim.named("member-diego")]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"$expand": "roleDefinition"}, 501),
        ({"$expand": "directoryScope"}, 501),
        ({"$expand": "owner"}, 400),
        ({"$top": "1"}, 400),
        ({"$orderby": "principalId"}, 400),
        ({"$select": "id,principalId"}, 200),
    ],
)
def test_role_assignment_query_options(graph_http: httpx.Client, params: dict[str, str], status: int):
    response = graph_http.get(ROLES, params=params)
    assert response.status_code == status, response.text


def test_assignment_ids_are_built_as_graphs_are():
    """rbacapplication-list-roleassignments.md, Example 1: the id of Global Administrator held by ace08ec9-..."""
    data = shapes.doc("roleassignment-list.json")["response"]["value"][0]
    assert assignment_id(data["roleDefinitionId"], data["principalId"]) == data["id"]


# shapes -------------------------------------------------------------------------------------------------------------
def test_authorization_policy_shape(graph_http: httpx.Client):
    shapes.assert_same_shape(shapes.doc("authorizationpolicy-get.json")["response"], graph_http.get(AUTHZ).json())


CA_EMPTY_LISTS = [
    "$.value[0].conditions.signInRiskLevels",
    "$.value[0].conditions.applications.excludeApplications",
    "$.value[0].conditions.applications.includeUserActions",
    *(
        f"$.value[0].conditions.users.{name}"
        for name in ("includeUsers", "excludeUsers", "includeGroups", "excludeGroups", "includeRoles", "excludeRoles")
    ),
    "$.value[0].grantControls.builtInControls",
    "$.value[0].grantControls.customAuthenticationFactors",
    "$.value[0].grantControls.termsOfUse",
]


def test_ca_policy_shape(unthrottled: GraphSimulator, graph_http: httpx.Client, monkeypatch: pytest.MonkeyPatch):
    for path in CA_EMPTY_LISTS:
        monkeypatch.setitem(shapes.MAY_BE_EMPTY, path, "Microsoft's example and the fixture's policy differ here")
    data = shapes.doc("conditionalaccess-policy-list.json")
    actual = graph_http.get(CA).json()
    shapes.assert_same_shape(data["response"], actual)
    strength = actual["value"][0]["grantControls"]["authenticationStrength"]
    shapes.assert_same_shape(data["authentication_strength"], strength)


def test_role_assignment_shapes(graph_http: httpx.Client, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(shapes.MAY_BE_EMPTY, "$.value[0].principal.imAddresses", "the fixture's users have none")
    data = shapes.doc("roleassignment-list.json")
    expanded = graph_http.get(
        ROLES, params={"$filter": f"roleDefinitionId eq '{GLOBAL_ADMINISTRATOR}'", "$expand": "principal"}
    ).json()
    shapes.assert_same_shape(data["response"], expanded)
    plain = graph_http.get(ROLES).json()
    shapes.assert_same_shape(data["without_expand"], plain)
    assert set(plain["value"][0]) == set(data["without_expand"]["value"][0])


# the sample tenants' posture (what the e2e tests assert) ------------------------------------------------------------
def posture_facts(sim: GraphSimulator) -> dict[str, Any]:
    sim.throttling.configure(conditional_access_per_s=None)
    with client_of(sim) as client:
        policy = client.get(AUTHZ).json()
        ca = client.get(CA).json()["value"]
        inviters = client.get(
            ROLES, params={"$filter": f"roleDefinitionId eq '{GUEST_INVITER}'", "$expand": "principal"}
        ).json()["value"]
        skus = client.get("/subscribedSkus").json()["value"]
        guests = client.get(
            "/users/$count", params={"$filter": "userType eq 'Guest'"}, headers={"ConsistencyLevel": "eventual"}
        )
    month_ago = sim.clock.now() - timedelta(days=30)
    risk = [
        s
        for s in sim.store.signins
        if s["status"]["errorCode"] == 53011 and parse_dt(s["createdDateTime"]) >= month_ago
    ]
    plans = {plan["servicePlanName"] for sku in skus for plan in sku["servicePlans"]}
    guest_users = [u for u in sim.store.users.values() if u["userType"] == "Guest"]
    return {
        "allowInvitesFrom": policy["allowInvitesFrom"],
        "guestUserRoleId": policy["guestUserRoleId"],
        "ca": [(p["displayName"], p["state"]) for p in ca],
        "inviters": sorted(
            (i["principal"]["@odata.type"], i["principal"]["displayName"], i["principal"].get("userType"))
            for i in inviters
        ),
        "p1": sim.entra_id_p1 and bool(plans & {"AAD_PREMIUM", "AAD_PREMIUM_P2"}),
        "risk_53011_last_30_days": len(risk),
        "guests": int(guests.text),
        "never_signed_in": sum(1 for u in guest_users if u.get("signInActivity") is None),
        "without_sponsors": sum(1 for u in guest_users if not u.get("sponsors")),
    }


def test_the_good_tenants_posture(graph_sim: GraphSimulator):
    assert posture_facts(graph_sim) == {
        "allowInvitesFrom": "adminsAndGuestInviters",
        "guestUserRoleId": "2af84b1e-32c8-42b7-82bc-daa82404023b",
        "ca": [
            ("MFA for guest and external users", "enabled"),
            ("Block high sign-in risk", "enabled"),
            ("Require compliant device for employees", "enabled"),
            ("Old: MFA for admins", "disabled"),
        ],
        "inviters": [
            ("#microsoft.graph.group", "Partner Inviters", None),
            ("#microsoft.graph.user", "Adele Vance", "Member"),
        ],
        "p1": True,
        "risk_53011_last_30_days": 2,
        "guests": 300,
        "never_signed_in": 65,
        "without_sponsors": 298,
    }
    all_guests = graph_sim.store.groups[graph_sim.named("group-all-guests")]["members"]
    assert set(all_guests) == {u["id"] for u in graph_sim.store.users.values() if u["userType"] == "Guest"}


def test_the_weak_tenants_posture(weak_sim: GraphSimulator):
    assert posture_facts(weak_sim) == {
        "allowInvitesFrom": "everyone",
        "guestUserRoleId": "a0b1b346-4d3e-4e8b-98f8-753987be4970",
        "ca": [
            ("MFA for guest and external users", "enabledForReportingButNotEnforced"),
            ("MFA for guests (Office only)", "enabled"),
            ("Block risky sign-ins", "enabled"),
            ("Password change on high user risk", "enabled"),
        ],
        "inviters": [
            ("#microsoft.graph.user", "Adele Vance", "Member"),
            ("#microsoft.graph.user", "Lena Licensed", "Guest"),
        ],
        "p1": False,
        "risk_53011_last_30_days": 5,
        "guests": 40,
        "never_signed_in": 11,
        "without_sponsors": 38,
    }
    policies = {p["displayName"]: p for p in weak_sim.store.ca_policies}
    office = policies["MFA for guests (Office only)"]["conditions"]["applications"]["includeApplications"]
    assert office == ["Office365"]
    risky = policies["Block risky sign-ins"]["conditions"]
    assert risky["signInRiskLevels"] == ["medium", "high"] and risky["users"]["excludeGroups"] == []
    password = policies["Password change on high user risk"]["grantControls"]
    assert (password["operator"], password["builtInControls"]) == ("AND", ["mfa", "passwordChange"])


def test_the_weak_tenant_has_no_signin_activity(weak_sim: GraphSimulator):
    with client_of(weak_sim) as client:
        response = client.get("/users", params={"$select": "id,signInActivity"})
    assert response.status_code == 403  # tenant.entraIdP1 false


def test_the_weak_fixture_regenerates_byte_identical():
    import io

    from local.fixtures.generate import DEFAULT_NOW, DEFAULT_SEED, write_tenant

    buffer = io.StringIO()
    write_tenant(buffer, guests=40, seed=DEFAULT_SEED, now=parse_dt(DEFAULT_NOW), posture="weak")
    assert buffer.getvalue() == WEAK.read_text(encoding="utf-8")


def test_the_simulator_serves_the_weak_fixture_from_the_command_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "local.graph_sim", "--tenant", str(WEAK), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("graph-sim listening on http://127.0.0.1:")
    finally:
        process.terminate()
        process.wait(timeout=15)
