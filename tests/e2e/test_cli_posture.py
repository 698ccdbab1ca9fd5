"""`guestwarden posture`: the installed CLI against the simulated tenants, as an admin runs it. The sample tenant
gets its settings right; the weak-posture fixture gets every check wrong; a tenant whose identity lacks the
posture permissions gets `unknown` checks naming them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from local.graph_sim.identity import GRAPH_APP_ROLES
from tests.e2e.cli import guestwarden

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "local" / "fixtures" / "contoso.json"
WEAK = ROOT / "local" / "fixtures" / "contoso-weak-posture.json"
ALL_GUESTS = json.loads(GOOD.read_text())["named"]["group-all-guests"]

pytestmark = pytest.mark.timeout(120)


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "STATE_SQLITE_PATH": str(tmp_path / "state.db"), **extra}


def statuses(stdout: str) -> dict[str, str]:
    return {c["check"]: c["status"] for c in json.loads(stdout)["checks"]}


def test_the_sample_tenant_shows_every_check_with_evidence(tmp_path: Path) -> None:
    result = guestwarden(
        "posture", "--tenant-sim", str(GOOD), "--json", env=env(tmp_path, POSTURE_GUEST_GROUP_ID=ALL_GUESTS)
    )
    assert result.returncode == 8, result.stderr  # its guest hygiene fails: 298 of 300 guests have no sponsor
    body = json.loads(result.stdout)
    assert statuses(result.stdout) == {
        "invites": "pass",
        "guest-access": "pass",
        "guest-mfa": "pass",
        "premium": "pass",
        "risk-policies": "warn",
        "hygiene": "fail",
    }
    checks = {c["check"]: c for c in body["checks"]}
    assert "Adele Vance (user" in " ".join(checks["invites"]["evidence"])
    assert "AAD_PREMIUM" in " ".join(checks["premium"]["evidence"])
    assert "guests: 300" in checks["hygiene"]["evidence"]
    assert all(c["portal"] for c in body["checks"])


def test_the_weak_tenant_fails_every_check(tmp_path: Path) -> None:
    result = guestwarden("posture", "--tenant-sim", str(WEAK), "--json", env=env(tmp_path))
    assert result.returncode == 8, result.stderr
    assert set(statuses(result.stdout).values()) == {"fail"}
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert "guests invite guests" in checks["invites"]["summary"]
    assert "(guest," in " ".join(checks["invites"]["evidence"])  # a guest holds Guest Inviter
    assert "not enforced" in checks["guest-mfa"]["summary"]  # report-only, Office only, and no P1
    assert any("unknown (the tenant has no Entra ID P1/P2" in line for line in checks["hygiene"]["evidence"])


def test_the_table_for_humans_names_each_check_and_its_fix(tmp_path: Path) -> None:
    result = guestwarden("posture", "--tenant-sim", str(WEAK), env=env(tmp_path))
    assert result.returncode == 8, result.stderr
    for title in (
        "Who can invite guests",
        "Guest user access restrictions",
        "MFA for guests",
        "Entra ID P1/P2",
        "Risk-based policies and guests",
        "Guest hygiene",
    ):
        assert title in result.stdout
    assert "6 fail" in result.stdout


def test_without_the_posture_permissions_checks_are_unknown_naming_them(tmp_path: Path) -> None:
    tenant = json.loads(GOOD.read_text())
    dropped = {GRAPH_APP_ROLES[name][0] for name in ("Policy.Read.All", "RoleManagement.Read.Directory")}
    tenant["appRoleAssignments"] = [a for a in tenant["appRoleAssignments"] if a["appRoleId"] not in dropped]
    fixture = tmp_path / "tenant.json"
    fixture.write_text(json.dumps(tenant))
    result = guestwarden("posture", "--tenant-sim", str(fixture), "--json", env=env(tmp_path))
    assert result.returncode == 8, result.stderr  # hygiene still fails; nothing crashed
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    for key in ("invites", "guest-access", "guest-mfa", "risk-policies"):
        assert checks[key]["status"] == "unknown"
        assert "Policy.Read.All not granted" in checks[key]["summary"]
    assert checks["premium"]["status"] == "pass"


def test_saved_shows_the_last_kept_result_without_graph(tmp_path: Path) -> None:
    missing = guestwarden("posture", "--saved", env=env(tmp_path))
    assert missing.returncode == 2 and "no saved posture yet" in missing.stderr
    kept = guestwarden("posture", "--tenant-sim", str(WEAK), "--save", "--json", env=env(tmp_path))
    assert kept.returncode == 8, kept.stderr
    # no --tenant-sim and Graph pointed nowhere: only the state store is read
    offline = env(tmp_path, GRAPH_BASE_URL="http://127.0.0.1:9/v1.0")
    saved = guestwarden("posture", "--saved", "--json", env=offline)
    assert saved.returncode == 8, saved.stderr
    assert json.loads(saved.stdout)["checks"] == json.loads(kept.stdout)["checks"]
