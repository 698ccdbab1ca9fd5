"""Nested exclusions as an operator sees them: `guestwarden stale plan|apply --tenant-sim URL` in its own process.
The sample tenant's exclusions group holds a group ("External Auditors") whose only member is a stale guest
(`excluded-by-nested-group`, never signed in since accepting 399 days ago): excluded as a transitive member."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.graph_sim import GraphSimulator
from tests.e2e.test_cli_stale import actions, enabled, operator_env, run, sim, tenant_now

__all__ = ["operator_env", "sim", "tenant_now"]  # the fixtures this module shares with test_cli_stale

pytestmark = pytest.mark.timeout(120)


def acted_on(plan: dict[str, Any]) -> set[str]:
    return {item["userId"] for item in plan["items"]}


def test_plan_skips_a_guest_who_is_only_a_nested_member(sim: GraphSimulator, operator_env: dict[str, str]) -> None:
    nested_guest = sim.named("excluded-by-nested-group")
    assert nested_guest not in sim.store.groups[sim.named("group-exclusions")]["members"]  # not a direct member

    result = run(operator_env, "stale", "plan", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["status"] == "dry-run", plan["message"]
    assert nested_guest not in acted_on(plan)
    assert sim.named("excluded-by-group") not in acted_on(plan)
    assert sim.named("stale-all") in actions(plan, "warn")  # the plan does act on the stale guests outside
    assert sim.requests.get("GET /users")  # the guests were read (the next test proves the opposite)

    # the same guest, with no exclusion group configured, is warned: the group is what keeps them
    unexcluded = json.loads(run(operator_env, "stale", "plan", "--json", STALE_EXCLUDE_GROUP_IDS="").stdout)
    assert nested_guest in actions(unexcluded, "warn")


def test_an_exclusion_group_past_the_cap_aborts_the_run_and_apply_changes_nothing(
    sim: GraphSimulator, operator_env: dict[str, str]
) -> None:
    group = sim.named("group-exclusions")
    planned = run(operator_env, "stale", "plan", "--json", STALE_EXCLUDE_GROUP_MAX_MEMBERS="3")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["status"] == "aborted" and plan["items"] == []
    # break-glass, excluded-by-group, the nested group and its guest: one page of 4, past the cap of 3
    assert group in plan["message"] and "4 read so far" in plan["message"]
    assert "STALE_EXCLUDE_GROUP_MAX_MEMBERS=3" in plan["message"]
    assert not sim.requests.get("GET /users")  # no guest was read, so none was judged

    before = enabled(sim)
    applied = run(operator_env, "stale", "apply", "--json", STALE_DRY_RUN="false", STALE_EXCLUDE_GROUP_MAX_MEMBERS="3")
    assert applied.returncode == 5, applied.stderr
    assert json.loads(applied.stdout)["status"] == "aborted"
    assert enabled(sim) == before and sim.outbox == []
