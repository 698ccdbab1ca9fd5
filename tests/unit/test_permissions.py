"""shared/permissions.py: which Graph app roles each configuration needs, the grant plan, the generated doc, and
the doctor's pure judgement of what it observed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shared.permissions import (
    RoleAssignment,
    ServicePrincipal,
    UnknownPermission,
    features_for,
    plan_grants,
    required_permissions,
)
from shared.services.doctor import Failure, all_ok, granted_from_claims, judge_permissions, judge_premium, token_claims
from shared.settings import Feature, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ALL = features_for(["licensing", "risk", "stale"])


def settings(**env: str) -> Settings:
    return load_settings(env, (Feature.GRAPH,))


def test_sku_mode_and_group_mode_need_different_licensing_roles() -> None:
    licensing = features_for(["licensing"])
    sku = required_permissions(licensing, settings(LICENSE_MODE="sku"))
    group = required_permissions(licensing, settings(LICENSE_MODE="group"))
    assert {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Organization.Read.All"} <= sku
    assert "GroupMember.ReadWrite.All" not in sku
    assert "GroupMember.ReadWrite.All" in group
    assert not {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Organization.Read.All"} & group
    assert {"User.Read.All", "Mail.Send"} <= sku & group


def test_stale_sweep_roles_and_mail_only_for_a_real_sweep() -> None:
    stale = features_for(["stale"])
    dry = required_permissions(stale, settings())
    assert dry == {
        "User.Read.All",
        "GroupMember.Read.All",
        "AuditLog.Read.All",
        "User.EnableDisableAccount.All",
        "User.RevokeSessions.All",
        "User.ReadWrite.All",
    }
    reclaim = {"LicenseAssignment.ReadWrite.All", "Organization.Read.All"}  # + GroupMember.ReadWrite.All in group mode
    reinvite = {"User.Invite.All"}  # POST /invitations: a never-redeemed invitation re-sent with its warning
    assert required_permissions(stale, settings(STALE_DRY_RUN="false")) == dry | {"Mail.Send"} | reclaim | reinvite
    no_reclaim = settings(STALE_DRY_RUN="false", STALE_RECLAIM_LICENSES="false", STALE_REINVITE_PENDING="false")
    assert required_permissions(stale, no_reclaim) == dry | {"Mail.Send"}
    group_mode = settings(
        STALE_DRY_RUN="false", LICENSE_MODE="group", LICENSE_GROUP_ID="ca980d17-d628-5da6-a8b1-b1d630d894c0"
    )
    assert "GroupMember.ReadWrite.All" in required_permissions(stale, group_mode)


def test_risk_needs_both_sign_in_log_roles_and_never_directory_write() -> None:
    every = required_permissions(ALL)  # without settings: the union over every configuration
    assert {"AuditLog.Read.All", "Directory.Read.All", "CrossTenantInformation.ReadBasic.All"} <= every
    assert "Directory.ReadWrite.All" not in every


def test_the_inventory_needs_sku_and_sign_in_activity_reads_and_no_flow_carries_them_for_it() -> None:
    assert required_permissions(features_for(["inventory"])) == {
        "User.Read.All",
        "Organization.Read.All",
        "AuditLog.Read.All",
    }
    risk = required_permissions(features_for(["risk"]))
    assert "Organization.Read.All" not in risk  # the inventory's rows follow its own feature, not Feature.GRAPH


def test_unknown_flow_is_named() -> None:
    with pytest.raises(ValueError, match="billing"):
        features_for(["licensing", "billing"])


def test_permissions_doc_is_generated_from_the_table() -> None:
    from tools.write_docs import render_permissions

    docs = (ROOT / "docs" / "permissions.md").read_text()
    assert "<!-- permissions:start" in docs
    assert render_permissions(docs) == docs, "docs/permissions.md is stale: run `make docs`"


GRAPH = ServicePrincipal(
    "graph-sp",
    "00000003-0000-0000-c000-000000000000",
    "Microsoft Graph",
    {"User.Read.All": "r-read", "Mail.Send": "r-mail", "Directory.ReadWrite.All": "r-dirw"},
)


def test_plan_grants_the_missing_keeps_the_held_and_prunes_only_when_asked() -> None:
    held = [
        RoleAssignment("a1", "r-read", "graph-sp"),
        RoleAssignment("a2", "r-dirw", "graph-sp"),
        RoleAssignment("a3", "r-other", "another-api"),  # another resource's role: never touched
    ]
    plan = {
        (c.action, c.permission, c.assignment_id)
        for c in plan_grants({"User.Read.All", "Mail.Send"}, GRAPH, held, False)
    }
    assert plan == {
        ("keep", "User.Read.All", "a1"),
        ("grant", "Mail.Send", None),
        ("extra", "Directory.ReadWrite.All", "a2"),
    }
    pruned = plan_grants({"User.Read.All", "Mail.Send"}, GRAPH, held, True)
    assert [(c.action, c.assignment_id) for c in pruned if c.action == "remove"] == [("remove", "a2")]


def test_plan_refuses_a_permission_graph_does_not_have() -> None:
    with pytest.raises(UnknownPermission, match=r"User\.Raed\.All"):
        plan_grants({"User.Raed.All"}, GRAPH, [], False)


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_roles_come_from_an_app_token_and_not_from_a_user_token() -> None:
    assert granted_from_claims(token_claims(jwt({"roles": ["User.Read.All"], "idtyp": "app"}))) == {"User.Read.All"}
    assert granted_from_claims(token_claims(jwt({"idtyp": "app", "appid": "x"}))) == set()  # nothing granted
    assert granted_from_claims(token_claims(jwt({"scp": "User.Read", "upn": "a@b"}))) is None
    assert token_claims("local-simulator-token") is None


def test_a_missing_role_fails_naming_the_role_the_flow_and_the_fix() -> None:
    stale = features_for(["stale"])
    granted = required_permissions(stale, settings()) - {"User.RevokeSessions.All"}
    check = judge_permissions(granted, "token", stale, settings())
    assert check.status == "fail" and not all_ok([check])
    assert "User.RevokeSessions.All" in check.detail and "4. stale sweep" in check.detail
    assert "guestwarden setup grant-permissions" in check.fix
    assert judge_permissions(granted | {"User.RevokeSessions.All"}, "token", stale, settings()).status == "ok"


def test_roles_only_the_posture_checks_need_warn_instead_of_failing() -> None:
    flows = features_for(["stale", "posture"])
    essential = required_permissions(features_for(["stale"]), settings())
    posture_only = required_permissions(flows, settings()) - essential
    assert posture_only == {
        "Policy.Read.All",
        "RoleManagement.Read.Directory",
        "Organization.Read.All",
        "Directory.Read.All",
    }
    check = judge_permissions(essential, "token", flows, settings())
    assert check.status == "warn" and all_ok([check])
    assert "Policy.Read.All" in check.detail and "posture" in check.detail and "unknown" in check.detail
    # a role the sweep needs still fails, whatever else is missing
    assert judge_permissions(essential - {"User.RevokeSessions.All"}, "token", flows, settings()).status == "fail"


def test_posture_findings_warn_in_the_doctor_at_most() -> None:
    from shared.domain.posture import Check as PostureCheck
    from shared.domain.posture import Status
    from shared.services.doctor import judge_posture

    found = PostureCheck("premium", "Entra ID P1/P2", Status.FAIL, "no Entra ID P1/P2", ("seats: 0",), "buy P1", "M365")
    check = judge_posture(found)
    assert (check.name, check.status) == ("posture: entra id p1/p2", "warn")
    assert check.detail == "fail: no Entra ID P1/P2; seats: 0" and check.fix == "buy P1 (M365)"
    assert judge_posture(PostureCheck("premium", "Entra ID P1/P2", Status.PASS, "present")).status == "ok"


def test_no_p1_fails_only_when_the_stale_sweep_is_enabled() -> None:
    no_p1 = Failure("403", 403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    assert judge_premium(no_p1, features_for(["stale"])).status == "fail"
    assert judge_premium(no_p1, features_for(["licensing"])).status == "warn"
    assert judge_premium(None, ALL).status == "ok"
