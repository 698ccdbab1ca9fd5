"""Exclusion groups count their transitive members (nested groups' members), and a group past
STALE_EXCLUDE_GROUP_MAX_MEMBERS stops the sweep before anyone is judged: on fakes of the ports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shared.domain.stale_plan import StalePlan, check_exclusion_group
from shared.services.stale import sweep_stale_guests
from tests.unit.fakes_stale import FakeStaleGraph, items_of
from tests.unit.test_stale_service import EXCLUDED_GROUP, REAL, Clock, audit, guest, make_deps

NESTED = "2b7c9e4a-0000-4000-8000-000000000001"
DEEPER = "2b7c9e4a-0000-4000-8000-000000000002"


def nested_tenant() -> FakeStaleGraph:
    """The exclusion group holds a guest and a group; that group holds a guest and a deeper group (which points
    back at the exclusion group: a cycle) holding a third guest. One stale guest is in no group at all."""
    graph = FakeStaleGraph(
        [guest("direct"), guest("nested"), guest("deeper"), guest("outsider"), guest("active", days_inactive=2)]
    )
    graph.groups[EXCLUDED_GROUP] = {"direct", NESTED}
    graph.groups[NESTED] = {"nested", DEEPER}
    graph.groups[DEEPER] = {"deeper", EXCLUDED_GROUP}
    return graph


def over_cap_tenant(members: int) -> FakeStaleGraph:
    graph = FakeStaleGraph([guest("stale-1"), guest("stale-2")])
    graph.groups[EXCLUDED_GROUP] = {f"m{i:05}" for i in range(members)}
    graph.member_page_size = 10
    return graph


async def test_a_guest_only_in_a_nested_group_is_excluded_through_every_level_and_a_cycle() -> None:
    graph, clock = nested_tenant(), Clock()
    deps = make_deps(graph, clock)
    plan = await sweep_stale_guests(deps)
    assert plan.status == "applied", plan.message
    assert [(i.user_id, str(i.action)) for i in await items_of(deps, plan)] == [("outsider", "warn")]
    assert plan.counts["skip:excluded-by-group"] == 3  # direct, nested, deeper
    assert graph.writes == [] and graph.outbox == []  # a warning mails sponsors: the outsider has none


async def test_a_group_past_the_cap_aborts_before_reading_a_guest_and_leaves_its_other_pages_unread() -> None:
    graph, clock = over_cap_tenant(95), Clock()
    deps = make_deps(graph, clock, replace(REAL, exclude_group_max_members=25))
    plan = await sweep_stale_guests(deps)
    assert plan.status == "aborted"
    assert EXCLUDED_GROUP in plan.message
    assert "30 read so far" in plan.message  # counted page by page: stopped at the first page past 25
    assert "STALE_EXCLUDE_GROUP_MAX_MEMBERS=25" in plan.message
    assert graph.member_pages_read == {EXCLUDED_GROUP: 3}  # of 10 pages
    assert graph.pages_read == 0  # no guest was read, so none judged
    assert graph.writes == [] and graph.outbox == []
    assert await items_of(deps, plan) == []
    assert ("stale-run", plan.run_id, "aborted") in await audit(deps)


async def test_a_group_exactly_at_the_cap_is_read_whole_and_nested_groups_count_as_members() -> None:
    graph, clock = nested_tenant(), Clock()
    # the exclusion group's transitive members: direct, nested, deeper, NESTED, DEEPER (the cycle adds nothing)
    at_cap = make_deps(graph, clock, replace(REAL, exclude_group_max_members=5))
    assert (await sweep_stale_guests(at_cap)).status == "applied"
    over = make_deps(nested_tenant(), Clock(), replace(REAL, dry_run=True, exclude_group_max_members=4))
    plan = await sweep_stale_guests(over)
    assert plan.status == "aborted" and "5 read so far" in plan.message


async def test_without_the_permission_the_sweep_aborts_naming_it_and_changes_nothing() -> None:
    graph, clock = nested_tenant(), Clock()
    graph.item_status[f"transitiveMembers:{EXCLUDED_GROUP}"] = 403
    deps = make_deps(graph, clock)
    plan = await sweep_stale_guests(deps)
    assert plan.status == "aborted"
    assert "GroupMember.Read.All" in plan.message and EXCLUDED_GROUP in plan.message
    assert graph.pages_read == 0 and graph.writes == [] and graph.outbox == []


def test_the_cap_rule_names_the_group_its_size_so_far_and_the_setting() -> None:
    plan = StalePlan("run", datetime(2026, 11, 23, tzinfo=UTC), dry_run=True)
    assert check_exclusion_group(plan, "g1", 50_000, 50_000) and plan.status == "planned"
    assert not check_exclusion_group(plan, "g1", 50_999, 50_000)
    assert plan.status == "aborted"
    assert "g1" in plan.message and "50999 read so far" in plan.message
    assert "STALE_EXCLUDE_GROUP_MAX_MEMBERS=50000" in plan.message and "Nothing was changed" in plan.message
