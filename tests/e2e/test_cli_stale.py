"""`guestwarden stale plan|apply` and `guestwarden restore` as an operator runs them: the console script in its
own process, against a running Graph simulator (`--tenant-sim URL`), with an embedded SQLite state store.

The CLI judges staleness by the wall clock, which the simulator agrees with: it rebases the tenant onto its start.
A sweep two weeks ago (the warning night) is replayed through the service with a clock set back 15 days.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.fixtures.generate import DEFAULT_NOW, write_tenant
from local.graph_sim import GraphSimulator
from local.graph_sim.clock import parse_dt
from shared.bootstrap import build_graph_gateway, build_state_store, settings_from_env, stale_deps
from shared.services.stale import sweep_stale_guests
from shared.settings import Feature
from tests.e2e.cli import guestwarden

ROOT = Path(__file__).resolve().parents[2]
NEVER_TOUCHED = ("excluded-by-group", "excluded-by-domain", "break-glass", "member-ext", "active-noninteractive")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tenant_now() -> dict[str, Any]:
    buffer = io.StringIO()
    write_tenant(buffer, guests=120, seed=7, now=parse_dt(DEFAULT_NOW))
    tenant: dict[str, Any] = json.loads(buffer.getvalue())
    return tenant


@pytest.fixture
def sim(tenant_now: dict[str, Any]) -> Any:
    simulator = GraphSimulator(tenant_now).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def operator_env(sim: GraphSimulator, tenant_now: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    hints = tenant_now["hints"]
    return {
        **os.environ,
        "GRAPH_BASE_URL": sim.base_url,
        "GRAPH_AUTH": "local-token",
        "STATE_BACKEND": "sqlite",
        "STATE_SQLITE_PATH": str(tmp_path / "state.db"),
        "STALE_REPORT_DIR": str(tmp_path / "reports"),
        "STALE_EXCLUDE_GROUP_IDS": hints["exclusionGroupId"],
        "STALE_EXCLUDE_DOMAINS": ",".join(hints["excludedDomains"]),
        "STALE_EXCLUDE_UPN_PATTERNS": "breakglass*",
        "MAIL_SENDER": sim.user("mailer")["userPrincipalName"],
        "STALE_MAX_ACTIONS": "1000",
        "STALE_MAX_PERCENT": "100",
    }


def run(env: dict[str, str], *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return guestwarden(*args, "--tenant-sim", env["GRAPH_BASE_URL"], env={**env, **overrides})


def actions(plan: dict[str, Any], action: str) -> set[str]:
    return {item["userId"] for item in plan["items"] if item["action"] == action}


def enabled(sim: GraphSimulator) -> dict[str, bool]:
    return {u["id"]: u["accountEnabled"] for u in sim.store.users.values()}


async def warn_two_weeks_ago(env: dict[str, str]) -> None:
    """The night the stale guests were warned: the same service the timer runs, its clock 15 days back."""
    settings = settings_from_env((Feature.GRAPH, Feature.STATE, Feature.STALE), {**env, "STALE_DRY_RUN": "false"})
    async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
        deps = replace(stale_deps(settings, graph, state), clock=lambda: datetime.now(UTC) - timedelta(days=15))
        night = await sweep_stale_guests(deps)
    assert night.status == "applied", night.message


def test_plan_is_a_dry_run_that_names_the_stale_and_changes_nothing(
    sim: GraphSimulator, operator_env: dict[str, str]
) -> None:
    before = enabled(sim)
    result = run(operator_env, "stale", "plan", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dryRun"] is True and plan["status"] == "dry-run"
    warned = actions(plan, "warn")
    assert {sim.named("stale-all"), sim.named("sponsored-stale"), sim.named("pending-old")} <= warned
    assert not warned & {sim.named(n) for n in NEVER_TOUCHED}
    assert {item["outcome"] for item in plan["items"]} == {"would-do"}
    assert enabled(sim) == before and sim.outbox == []  # nobody mailed, nobody disabled
    assert [Path(p).suffix for p in plan["reports"]] == [".csv", ".html"]
    assert all(Path(p).is_file() for p in plan["reports"])


def test_apply_refuses_while_dry_run_is_on(operator_env: dict[str, str]) -> None:
    result = run(operator_env, "stale", "apply")  # STALE_DRY_RUN defaults to true
    assert result.returncode == 2
    assert "STALE_DRY_RUN" in result.stderr


def test_apply_over_the_cap_acts_on_nobody_and_exits_5(sim: GraphSimulator, operator_env: dict[str, str]) -> None:
    before = enabled(sim)
    result = run(operator_env, "stale", "apply", "--json", STALE_DRY_RUN="false", STALE_MAX_ACTIONS="3")
    assert result.returncode == 5, result.stderr
    plan = json.loads(result.stdout)
    assert plan["status"] == "capped" and "3" in plan["message"]
    assert enabled(sim) == before and sim.outbox == []


async def test_apply_disables_after_the_warning_and_restore_undoes_it(
    sim: GraphSimulator, operator_env: dict[str, str]
) -> None:
    await warn_two_weeks_ago(operator_env)
    disabled_by_others = {u for u, on in enabled(sim).items() if not on}

    applied = run(operator_env, "stale", "apply", "--json", STALE_DRY_RUN="false")
    assert applied.returncode == 0, applied.stderr
    plan = json.loads(applied.stdout)
    assert plan["status"] == "applied"
    disabled = actions(plan, "disable")
    assert sim.named("stale-all") in disabled and sim.named("sponsored-stale") in disabled
    assert not disabled & {sim.named(n) for n in NEVER_TOUCHED}
    assert all(sim.user(u)["accountEnabled"] is False for u in disabled)

    # one guest back by id (a sponsor vouched for them)...
    one = sim.named("sponsored-stale")
    single = run(operator_env, "restore", one, "--json")
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout) == [{"userId": one, "status": "re-enabled", "detail": ""}]
    assert sim.user(one)["accountEnabled"] is True

    # ...then the whole run undone; the one already back is not touched twice
    undo = run(operator_env, "restore", "--run", plan["runId"], "--json")
    assert undo.returncode == 0, undo.stderr
    outcomes = {o["userId"]: o["status"] for o in json.loads(undo.stdout)}
    assert set(outcomes) == disabled
    assert outcomes[one] == "already-done"  # not re-enabled twice
    assert all(sim.user(u)["accountEnabled"] for u in disabled - disabled_by_others)
    # an account someone else had disabled before guestwarden acted goes back to that, and says so
    assert sim.named("disabled-stale") in disabled_by_others & disabled
    assert all(not sim.user(u)["accountEnabled"] for u in disabled_by_others)
    assert {outcomes[u] for u in disabled_by_others & disabled} == {"left-disabled"}

    # a user guestwarden never touched is refused, not "restored"
    member = sim.named("member-ext")
    refused = run(operator_env, "restore", member, "--json")
    assert json.loads(refused.stdout)[0]["status"] == "not-ours"


def test_restore_needs_exactly_one_target(operator_env: dict[str, str]) -> None:
    result = run(operator_env, "restore")
    assert result.returncode == 2 and "USER" in result.stderr


def test_a_pending_invitation_is_re_sent_with_its_warning_once(
    sim: GraphSimulator, operator_env: dict[str, str]
) -> None:
    """Re-invite before purge (issue 17, item 2): `stale plan` shows it, `stale apply` re-sends the never-redeemed
    invitation through POST /invitations (seen in the simulator's invitation log), and the next night does not."""
    pending = sim.user("pending-old")
    redirect = "https://myapps.microsoft.com/?tenantid=2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"
    env = {**operator_env, "STALE_REINVITE_REDIRECT_URL": redirect, "STALE_REINVITE_MESSAGE": "Accept by {disable_on}."}

    table = run(env, "stale", "plan")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if pending["userPrincipalName"] in line)
    assert "would re-invite" in row and "invitations to re-send with the warnings: " in table.stdout
    assert sim.invitations == []  # a dry run only shows it

    applied = run(env, "stale", "apply", "--json", STALE_DRY_RUN="false")
    assert applied.returncode == 0, applied.stderr
    plan = json.loads(applied.stdout)
    item = next(i for i in plan["items"] if i["userId"] == pending["id"])
    assert (item["action"], item["outcome"], item["evidence"]["reinvite"]) == ("warn", "done", "sent")
    assert plan["reinvites"] >= 1
    [invitation] = [i for i in sim.invitations if i["invitedUserId"] == pending["id"]]
    assert invitation["messageSent"] is True and invitation["invitedUserEmailAddress"] == pending["mail"]
    assert invitation["inviteRedirectUrl"] == redirect
    disable_on = (datetime.now(UTC) + timedelta(days=14)).date()
    assert invitation["customizedMessageBody"] in {f"Accept by {disable_on + timedelta(days=d)}." for d in (-1, 0)}
    assert sim.user(pending["id"])["externalUserState"] == "PendingAcceptance"  # the same guest, not redeemed
    csv_report = Path(plan["reports"][0]).read_text(encoding="utf-8-sig")
    assert any(pending["id"] in line and "re-invited" in line for line in csv_report.splitlines())

    again = run(env, "stale", "apply", "--json", STALE_DRY_RUN="false")  # the next run: in its warning grace
    assert again.returncode == 0, again.stderr
    assert [i["invitedUserId"] for i in sim.invitations].count(pending["id"]) == 1
