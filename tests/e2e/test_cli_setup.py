"""`guestwarden setup grant-permissions` against the Graph simulator, as an operator runs it after a deployment:
the real msgraph-sdk reads Microsoft Graph's service principal and the managed identity's app role assignments,
and grants (or, with --prune, removes) exactly what the flows need."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from local.graph_sim import GraphSimulator
from local.graph_sim.identity import GRAPH_APP_ROLES
from local.graph_sim.notifications import SIM_APPLICATION_ID, SIM_CREATOR_ID

pytestmark = pytest.mark.timeout(120)

MISSING = ("User.RevokeSessions.All", "CrossTenantInformation.ReadBasic.All")
EXTRA = "Directory.ReadWrite.All"


def role_id(value: str) -> str:
    return GRAPH_APP_ROLES[value][0]


@pytest.fixture
def sim(
    contoso_tenant: dict[str, Any], graph_sim_factory: Callable[[dict[str, Any]], GraphSimulator]
) -> GraphSimulator:
    """The sample tenant, but guestwarden's identity lacks two roles it needs and holds one it does not."""
    tenant = copy.deepcopy(contoso_tenant)
    missing = {role_id(value) for value in MISSING}
    tenant["appRoleAssignments"] = [a for a in tenant["appRoleAssignments"] if a["appRoleId"] not in missing]
    extra = dict(tenant["appRoleAssignments"][0], id="extra-assignment", appRoleId=role_id(EXTRA))
    tenant["appRoleAssignments"].append(extra)
    return graph_sim_factory(tenant)


def granted(sim: GraphSimulator) -> set[str]:
    """What the identity's token carries, from the simulator's token endpoint (as Entra issues it)."""
    token = httpx.post(sim.token_url, data={"grant_type": "client_credentials"}, timeout=60).json()["access_token"]
    payload = token.split(".")[1]
    return set(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("roles", []))


def grant(sim: GraphSimulator, *args: str, env: dict[str, str] | None = None) -> Result:
    """As an operator of a real sweep: the sample identity holds what one needs (User.Invite.All, which re-sends
    never-redeemed invitations, only then: docs/permissions.md)."""
    argv = ["setup", "grant-permissions", "--tenant-sim", sim.base_url, "--identity", SIM_CREATOR_ID, *args]
    return CliRunner().invoke(app, argv, env={"STALE_DRY_RUN": "false", **(env or {})})


def changes(result: Result, action: str) -> set[str]:
    return {c["permission"] for c in json.loads(result.stdout)["changes"] if c["action"] == action}


def test_dry_run_shows_the_plan_and_changes_nothing(sim: GraphSimulator) -> None:
    before = granted(sim)
    result = grant(sim, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["dryRun"] is True and body["granted"] == 0
    assert body["identity"] == {"id": SIM_CREATOR_ID, "appId": SIM_APPLICATION_ID, "displayName": "guestwarden"}
    assert changes(result, "grant") == set(MISSING)
    assert changes(result, "extra") == {EXTRA}  # held, not needed, left alone without --prune
    assert "User.Read.All" in changes(result, "keep")
    assert granted(sim) == before


def test_apply_grants_exactly_the_missing_roles_and_a_second_run_changes_nothing(sim: GraphSimulator) -> None:
    first = grant(sim, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["granted"] == 2
    assert changes(first, "grant") == set(MISSING)
    roles = granted(sim)
    assert set(MISSING) <= roles and EXTRA in roles  # nothing removed without --prune
    posted = sim.requests["POST /servicePrincipals/{id}/{kind}"]
    assert posted == 2

    second = grant(sim, "--json")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["granted"] == 0
    assert changes(second, "grant") == set()
    assert sim.requests["POST /servicePrincipals/{id}/{kind}"] == posted
    assert granted(sim) == roles


def test_prune_removes_only_graph_roles_the_flows_do_not_need(sim: GraphSimulator) -> None:
    result = grant(sim, "--prune")
    assert result.exit_code == 0, result.output
    assert "removed" in result.stdout and EXTRA in result.stdout  # the table lists what went
    roles = granted(sim)
    assert EXTRA not in roles
    assert set(MISSING) <= roles and "User.Read.All" in roles
    # the assignment to Graph was removed on the wire, by id
    assert sim.requests["DELETE /servicePrincipals/{id}/{kind}/{assignment}"] == 1


def test_identity_by_app_id_and_group_mode_needs_group_member_write(sim: GraphSimulator) -> None:
    argv = ["setup", "grant-permissions", "--tenant-sim", sim.base_url, "--identity", SIM_APPLICATION_ID]
    result = CliRunner().invoke(
        app, [*argv, "--flows", "licensing", "--dry-run", "--json"], env={"LICENSE_MODE": "group"}
    )
    assert result.exit_code == 0, result.output
    assert changes(result, "grant") == {"GroupMember.ReadWrite.All"}
    assert "LicenseAssignment.ReadWrite.All" in changes(result, "extra")  # sku mode's roles: not needed here


def test_unknown_identity_and_unknown_flow_are_usage_errors(sim: GraphSimulator) -> None:
    nobody = "11111111-2222-3333-4444-555555555555"
    result = CliRunner().invoke(app, ["setup", "grant-permissions", "--tenant-sim", sim.base_url, "--identity", nobody])
    assert result.exit_code == 2
    assert "--identity" in result.output and nobody in result.output
    result = CliRunner().invoke(
        app, ["setup", "grant-permissions", "--tenant-sim", sim.base_url, "--identity", "guestwarden"]
    )
    assert result.exit_code == 2
    assert "not a service principal object id or appId" in result.output
    result = grant(sim, "--flows", "licensing,billing")
    assert result.exit_code == 2
    assert "billing" in result.output
