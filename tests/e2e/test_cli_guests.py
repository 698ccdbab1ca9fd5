"""`guestwarden guests`: the installed console script against the simulator, as an admin runs it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.cli import guestwarden

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())

pytestmark = pytest.mark.timeout(90)


run = guestwarden


def test_inventory_as_json_lists_every_guest_and_no_member() -> None:
    result = run("guests", "--tenant-sim", str(FIXTURE), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    guests = {u["id"] for u in TENANT["users"] if u["userType"] == "Guest"}
    assert {r["id"] for r in rows} == guests
    by_id = {r["id"]: r for r in rows}
    named = TENANT["named"]
    assert named["member-ext"] not in by_id  # #EXT# in the UPN, but a member
    assert by_id[named["pending-recent"]]["state"] == "PendingAcceptance"
    assert by_id[named["never-signed-in-old"]]["last_activity"] is None
    assert by_id[named["accepted-licensed"]]["licenses"]
    assert by_id[named["sponsored-stale"]]["sponsors"]


def test_inventory_table_for_humans() -> None:
    result = run("guests", "--tenant-sim", str(FIXTURE), "--no-sponsors")
    assert result.returncode == 0, result.stderr
    assert "300 guests" in result.stdout
    assert "invitations pending" in result.stdout


def test_missing_fixture_is_a_usage_error() -> None:
    result = run("guests", "--tenant-sim", "no/such/tenant.json")
    assert result.returncode == 2
    assert "no tenant fixture" in result.stderr


def test_bad_settings_are_named_and_exit_2() -> None:
    env = {**os.environ, "GRAPH_BASE_URL": "http://graph.example.com/v1.0", "GRAPH_PAGE_SIZE": "0"}
    result = run("guests", env=env)
    assert result.returncode == 2
    assert "GRAPH_BASE_URL" in result.stderr and "GRAPH_PAGE_SIZE" in result.stderr


def test_graph_failure_exits_3(tmp_path: Path) -> None:
    # a loopback port nobody listens on: a transport failure surfaces as a GraphError, not a traceback
    env = {
        **os.environ,
        "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
        "GRAPH_AUTH": "local-token",
        "GRAPH_MAX_RETRIES": "0",
    }
    result = run("guests", "--json", env=env)
    assert result.returncode == 3, result.stderr
    assert "Graph" in result.stderr
    assert "Traceback" not in result.stderr
