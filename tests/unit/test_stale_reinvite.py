"""Re-invite before purge (issue 17, item 2) on fakes: who is re-invited (warnings of never-redeemed invitations
only), dry runs only show it, once per lifecycle episode whatever happens (a refusal may be retried, a timeout,
a 5xx or a process that died while inviting never), audited, and shown in the plan, the CSV and the HTML report."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.graph import GraphError
from shared.domain.directory import DirectoryUser
from shared.domain.reinvite import (
    REINVITE_EVIDENCE,
    ReinviteConfig,
    ReinviteState,
    plan_reinvite,
    reinvite_label,
)
from shared.domain.stale import Action
from shared.domain.stale_plan import PlanItem, StalePlan, add_to_plan
from shared.ports.state import ANY_ETAG
from shared.services.stale import StaleConfig, StaleDeps, sweep_stale_guests
from shared.services.stale.reinvite import REINVITE_ACTION, REINVITE_INTENT_KIND, reinvite_before_purge
from tests.unit.fakes_stale import FakeStaleGraph, MemoryReportStore, items_of
from tests.unit.test_stale_service import POLICY, REAL, START, Clock, guest, make_deps

REINVITING = replace(POLICY, reinvite_pending=True)
CONFIG = replace(REAL, reinvite=ReinviteConfig("https://myapps.microsoft.com/?tenantid=t1", "Accept by {disable_on}."))


def pending(user_id: str, days: int = 60, **props: Any) -> DirectoryUser:
    """A guest invited `days` ago that never redeemed (STALE_PENDING_DAYS is 30)."""
    invited = START - timedelta(days=days)
    return guest(
        user_id,
        days_inactive=None,
        external_user_state="PendingAcceptance",
        external_user_state_changed=invited,
        created=invited,
        **props,
    )


def tenant() -> FakeStaleGraph:
    return FakeStaleGraph([pending("p1"), pending("p-new", days=20), guest("stale"), guest("active", days_inactive=2)])


async def audit(deps: StaleDeps, action: str = REINVITE_ACTION) -> list[tuple[str, str]]:
    return [(e.subject, e.outcome) async for e in deps.state.query(START - timedelta(days=1), action=action)]


# --- the rule --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("action", "basis", "mail", "enabled", "expected"),
    [
        (Action.WARN, "invitation-pending", "p@x.com", True, ReinviteState.PLANNED),
        (Action.WARN, "invitation-pending", "", True, ReinviteState.NO_ADDRESS),
        (Action.WARN, "invitation-pending", "p@x.com", False, None),  # STALE_REINVITE_PENDING=false
        (Action.WARN, "accepted-never-signed-in", "p@x.com", True, None),  # redeemed: nothing to re-send
        (Action.WARN, "activity", "p@x.com", True, None),
        (Action.DISABLE, "invitation-pending", "p@x.com", True, None),  # only the warning stage re-invites
        (Action.DELETE, "invitation-pending", "p@x.com", True, None),
    ],
)
def test_only_the_warning_of_a_never_redeemed_invitation_re_invites(
    action: Action, basis: str, mail: str, enabled: bool, expected: ReinviteState | None
) -> None:
    assert plan_reinvite(action, {"basis": basis}, mail, enabled) == expected


def test_labels_say_what_happened_and_a_dry_run_says_would() -> None:
    planned = {REINVITE_EVIDENCE: "planned"}
    assert reinvite_label(planned, "would-do") == "would re-invite"
    assert reinvite_label(planned, "not-done") == "not re-invited"
    assert reinvite_label({REINVITE_EVIDENCE: "sent"}, "done") == "re-invited"
    assert reinvite_label({REINVITE_EVIDENCE: "uncertain"}, "done") == "re-invite uncertain: not sent again"
    assert reinvite_label({}, "done") == ""


def test_the_message_names_the_dates_and_leaves_other_braces_alone() -> None:
    config = ReinviteConfig(message="Accept by {disable_on} (deleted {delete_on}) {other}")
    assert config.message_for("2026-12-07", "2027-01-06") == "Accept by 2026-12-07 (deleted 2027-01-06) {other}"


def test_the_plan_counts_and_marks_the_re_invites() -> None:
    plan = StalePlan("r1", START, dry_run=True)
    items = [add_to_plan(plan, user, None, START, REINVITING, False) for user in tenant().users.values()]
    marked = {i.user_id: i.evidence.get(REINVITE_EVIDENCE) for i in items if i is not None}
    assert marked == {"p1": "planned", "stale": None}
    assert plan.reinvites == 1 and plan.tally()["reinvites"] == 1
    off = StalePlan("r2", START, dry_run=True)
    for user in tenant().users.values():
        add_to_plan(off, user, None, START, POLICY, False)
    assert off.reinvites == 0


# --- the sweep -------------------------------------------------------------------------------------------------
async def test_a_dry_run_only_shows_would_re_invite() -> None:
    graph, reports = tenant(), MemoryReportStore()
    deps = make_deps(graph, Clock(), StaleConfig(max_actions=100, max_percent=100), reports=reports, policy=REINVITING)
    plan = await sweep_stale_guests(deps)
    assert plan.status == "dry-run" and plan.reinvites == 1
    assert graph.invitations == [] and await audit(deps) == []
    rows = list(csv.DictReader(io.StringIO(reports.files[f"stale-{plan.run_id}.csv"].decode("utf-8-sig"))))
    assert {r["userId"]: r["reinvite"] for r in rows} == {"p1": "would re-invite", "stale": ""}
    html = reports.files[f"stale-{plan.run_id}.html"].decode()
    assert "would re-invite" in html and "to re-send with the warnings" in html


async def test_the_warning_re_sends_the_invitation_once_and_the_next_stages_do_not() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    warned = await sweep_stale_guests(deps)
    assert warned.status == "applied", warned.message
    [sent] = graph.invitations
    assert (sent.user_id, sent.email) == ("p1", "p1@fabrikam.com")
    assert sent.redirect_url == "https://myapps.microsoft.com/?tenantid=t1"
    assert sent.message == "Accept by 2026-12-07."  # the warning's disable date (STALE_WARN_GRACE_DAYS=14)
    items = {i.user_id: i for i in await items_of(deps, warned)}
    assert items["p1"].evidence[REINVITE_EVIDENCE] == "sent" and items["p1"].outcome == "done"
    assert REINVITE_EVIDENCE not in items["stale"].evidence
    assert await audit(deps) == [("p1", "sent")]
    [warning] = [e async for e in deps.state.query(START - timedelta(days=1), action="stale-warn") if e.subject == "p1"]
    assert warning.evidence[REINVITE_EVIDENCE] == "sent"  # the warning's own audit entry says so too
    [reinvite] = [e async for e in deps.state.query(START - timedelta(days=1), action=REINVITE_ACTION)]
    assert reinvite.correlation_id == warned.run_id and reinvite.evidence["address"] == "p1@fabrikam.com"

    clock.advance(14)
    disabled = await sweep_stale_guests(deps)
    assert "p1" in {i.user_id for i in await items_of(deps, disabled) if i.action is Action.DISABLE}
    clock.advance(30)
    await sweep_stale_guests(deps)
    assert "p1" in graph.deleted
    assert [i.user_id for i in graph.invitations].count("p1") == 1  # once, before it was disabled or deleted


async def test_switched_off_nobody_is_re_invited() -> None:
    graph = tenant()
    deps = make_deps(graph, Clock(), CONFIG)  # POLICY: reinvite_pending False
    plan = await sweep_stale_guests(deps)
    assert plan.status == "applied" and plan.reinvites == 0 and graph.invitations == []


# --- once per episode ------------------------------------------------------------------------------------------
def planned_item() -> tuple[StalePlan, PlanItem]:
    plan = StalePlan("run-1", START, dry_run=False)
    item = add_to_plan(plan, pending("p1"), None, START, REINVITING, False)
    assert item is not None and item.evidence[REINVITE_EVIDENCE] == "planned"
    return plan, item


async def test_a_second_attempt_in_the_same_episode_does_not_send_again() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    plan, item = planned_item()
    assert await reinvite_before_purge(plan, item, deps) is ReinviteState.SENT
    again_plan, again = planned_item()
    again_plan.run_id = "run-2"
    assert await reinvite_before_purge(again_plan, again, deps) is ReinviteState.ALREADY_SENT
    assert len(graph.invitations) == 1
    assert again.evidence[REINVITE_EVIDENCE] == "already-sent"


@pytest.mark.parametrize("status", [None, 500, 503])
async def test_a_timeout_or_5xx_is_uncertain_and_never_repeated(status: int | None) -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    graph.invite_error = GraphError(status, "timeout" if status is None else "serviceUnavailable", "no answer")
    plan, item = planned_item()
    assert await reinvite_before_purge(plan, item, deps) is ReinviteState.UNCERTAIN
    assert await audit(deps) == [("p1", "uncertain")]
    assert await deps.state.get(REINVITE_INTENT_KIND, "p1") is None
    plan2, again = planned_item()
    plan2.run_id = "run-2"
    assert await reinvite_before_purge(plan2, again, deps) is ReinviteState.ALREADY_SENT
    assert len(graph.invitations) == 1  # the one Graph may have sent; none after it


async def test_a_refusal_is_certainly_not_sent_audited_and_may_be_tried_again() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    graph.invite_error = GraphError(403, "Authorization_RequestDenied", "Insufficient privileges")
    plan, item = planned_item()
    assert await reinvite_before_purge(plan, item, deps) is ReinviteState.FAILED
    assert graph.invitations == [] and await audit(deps) == [("p1", "failed")]
    assert reinvite_label(item.evidence, item.outcome) == "re-invite failed"
    plan2, again = planned_item()
    assert await reinvite_before_purge(plan2, again, deps) is ReinviteState.SENT  # the claim was released
    assert len(graph.invitations) == 1


async def test_a_refused_re_invite_does_not_stop_the_warning() -> None:
    graph, clock = tenant(), Clock()
    graph.invite_error = GraphError(403, "Authorization_RequestDenied", "Insufficient privileges")
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    plan = await sweep_stale_guests(deps)
    items = {i.user_id: i for i in await items_of(deps, plan)}
    assert items["p1"].outcome == "done" and items["p1"].evidence[REINVITE_EVIDENCE] == "failed"
    assert sorted(await audit(deps, "stale-warn")) == [("p1", "done"), ("stale", "done")]


async def test_a_process_that_died_while_inviting_leaves_it_uncertain() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    plan, item = planned_item()
    # a first invocation claimed the re-invite, wrote its intent, and died before Graph's answer was recorded
    await deps.state.claim(REINVITE_ACTION, "p1", item.scope, owner="dead", lease_seconds=60)
    await deps.state.put(REINVITE_INTENT_KIND, "p1", {"scope": item.scope, "runId": plan.run_id}, etag=ANY_ETAG)
    clock.advance(1)  # its lease ran out
    assert await reinvite_before_purge(plan, item, deps) is ReinviteState.UNCERTAIN
    assert graph.invitations == []  # not sent again: the dead one may have
    assert await audit(deps) == [("p1", "uncertain")]


async def test_an_answer_for_another_user_is_flagged_not_repeated() -> None:
    graph, clock = tenant(), Clock()
    graph.invite_answers_for = "someone-else"
    deps = make_deps(graph, clock, CONFIG, policy=REINVITING)
    plan, item = planned_item()
    assert await reinvite_before_purge(plan, item, deps) is ReinviteState.MISMATCH
    assert await audit(deps) == [("p1", "mismatch")]
    plan2, again = planned_item()
    plan2.run_id = "run-2"
    assert await reinvite_before_purge(plan2, again, deps) is ReinviteState.ALREADY_SENT
