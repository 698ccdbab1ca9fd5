"""sweep_stale_guests / restore on fakes: dry run by default, caps, aborts, exactly-once, undo, safe output."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.adapters.graph import GraphError
from shared.adapters.templates import StaleTemplates
from shared.domain.directory import DirectoryContact, DirectoryUser, SignInActivity
from shared.domain.stale import StalePolicy
from shared.services.stale import (
    RECORD_KIND,
    StaleConfig,
    StaleDeps,
    restore_guest,
    restore_run,
    sweep_stale_guests,
)
from shared.services.stale.report import csv_cell
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes_stale import FakeStaleGraph, MemoryReportStore, items_of

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
EXCLUDED_GROUP = "1ed3d779-f08b-59e8-9bc1-a281489c59a4"
POLICY = StalePolicy(exclude_group_ids=frozenset({EXCLUDED_GROUP}), exclude_domains=frozenset({"woodgrovebank.com"}))
REAL = StaleConfig(dry_run=False, max_actions=100, max_percent=100, mail_sender="guestwarden@contoso.com")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


def guest(user_id: str, days_inactive: float | None = 200, **props: Any) -> DirectoryUser:
    stamp = START - timedelta(days=days_inactive) if days_inactive is not None else None
    base: dict[str, Any] = {
        "id": user_id,
        "display_name": user_id,
        "user_type": "Guest",
        "mail": f"{user_id}@fabrikam.com",
        "user_principal_name": f"{user_id}_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "external_user_state": "Accepted",
        "external_user_state_changed": START - timedelta(days=400),
        "created": START - timedelta(days=400),
        "account_enabled": True,
        "sign_in_activity": SignInActivity(stamp, stamp, stamp) if stamp else None,
    }
    base.update(props)
    return DirectoryUser(**base)


def tenant() -> FakeStaleGraph:
    graph = FakeStaleGraph(
        [
            guest("stale-1"),
            guest("stale-2"),
            guest("active", days_inactive=3),
            guest("excluded-group"),
            guest("excluded-domain", mail="x@woodgrovebank.com"),
            guest("member-ext", user_type="Member"),
        ]
    )
    graph.groups[EXCLUDED_GROUP] = {"excluded-group", "break-glass"}
    graph.sponsors["stale-1"] = [DirectoryContact("s1", "Adele", "adele@contoso.com")]
    return graph


def make_deps(graph: FakeStaleGraph, clock: Clock, config: StaleConfig = REAL, **kw: Any) -> StaleDeps:
    state = kw.pop("state", None) or MemoryStateStore(clock=clock)
    return StaleDeps(
        # the fake implements what the sweep calls, not the partitioned-scan methods (count_guests, guest_span,
        # get_users) nor iter_guest_pages' select=: StaleGraph is wider than this use of it
        graph=graph,  # type: ignore[arg-type]
        state=state,
        reports=kw.pop("reports", None) or MemoryReportStore(),
        templates=StaleTemplates(),
        policy=kw.pop("policy", POLICY),
        config=config,
        clock=clock,
        **kw,
    )


async def audit(deps: StaleDeps) -> list[tuple[str, str, str]]:
    return [(e.action, e.subject, e.outcome) async for e in deps.state.query(START - timedelta(days=1))]


async def test_dry_run_is_the_default_and_plans_everything_without_touching_anyone() -> None:
    graph, clock = tenant(), Clock()
    reports = MemoryReportStore()
    deps = make_deps(graph, clock, StaleConfig(max_actions=100, max_percent=100), reports=reports)
    plan = await sweep_stale_guests(deps)
    assert plan.status == "dry-run"
    assert sorted((i.user_id, str(i.action), i.outcome) for i in await items_of(deps, plan)) == [
        ("stale-1", "warn", "would-do"),
        ("stale-2", "warn", "would-do"),
    ]
    assert graph.writes == [] and graph.outbox == []
    assert [name.rsplit(".", 1)[1] for name in sorted(reports.files)] == ["csv", "html"]
    assert await audit(deps) == [("stale-run", plan.run_id, "dry-run")]
    assert [r async for r in deps.state.list_records(RECORD_KIND)] == []


async def test_lifecycle_warn_disable_delete_with_sponsors_told_and_exclusions_untouched() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    warned = await sweep_stale_guests(deps)
    assert warned.status == "applied"
    assert [m.to for m in graph.outbox] == [("adele@contoso.com",)]
    assert "disabled on 2026-12-07" in graph.outbox[0].subject
    assert graph.writes == []

    clock.advance(13)
    assert await items_of(deps, await sweep_stale_guests(deps)) == []  # still in the warning grace period
    clock.advance(1)
    await sweep_stale_guests(deps)
    assert sorted(graph.writes) == ["disable stale-1", "disable stale-2", "revoke stale-1", "revoke stale-2"]

    clock.advance(30)
    await sweep_stale_guests(deps)
    assert sorted(graph.deleted) == ["stale-1", "stale-2"]
    untouched = {"active", "excluded-group", "excluded-domain", "member-ext"}
    assert not [w for w in graph.writes if w.split()[1] in untouched]
    assert all(graph.users[u].account_enabled for u in untouched)
    actions = [(a, s) for a, s, o in await audit(deps) if a != "stale-run" and o == "done"]
    assert sorted(actions) == sorted(
        [(f"stale-{a}", u) for a in ("warn", "disable", "delete") for u in ("stale-1", "stale-2")]
    )


async def test_every_action_is_audited_with_its_evidence() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    plan = await sweep_stale_guests(deps)
    entries = [e async for e in deps.state.query(START - timedelta(days=1), action="stale-warn")]
    first = next(e for e in entries if e.subject == "stale-1")
    assert first.correlation_id == plan.run_id
    assert first.evidence["inactiveDays"] == 200
    assert first.evidence["lastNonInteractiveSignIn"] == (START - timedelta(days=200)).isoformat()
    assert first.evidence["sponsors"] == ["adele@contoso.com"]


async def test_a_run_over_the_cap_acts_on_nobody_and_keeps_the_plan() -> None:
    graph, clock = tenant(), Clock()
    reports = MemoryReportStore()
    deps = make_deps(graph, clock, replace(REAL, max_actions=1), reports=reports)
    plan = await sweep_stale_guests(deps)
    assert plan.status == "capped"
    assert "cap of 1" in plan.message
    assert graph.writes == [] and graph.outbox == []
    assert len(await items_of(deps, plan)) == 2
    csv_text = next(v for k, v in reports.files.items() if k.endswith(".csv")).decode("utf-8-sig")
    assert "stale-1" in csv_text and "not-done" in csv_text


async def test_percent_cap_counts_against_all_guests() -> None:
    graph, clock = tenant(), Clock()  # 5 guests, 2 stale = 40 %
    assert (await sweep_stale_guests(make_deps(graph, clock, replace(REAL, max_percent=39)))).status == "capped"
    assert (await sweep_stale_guests(make_deps(graph, clock, replace(REAL, max_percent=40)))).status == "applied"


async def test_abort_when_most_redeemed_guests_lack_sign_in_activity() -> None:
    graph = FakeStaleGraph([guest(f"g{i}", days_inactive=None) for i in range(6)] + [guest("a", days_inactive=1)])
    deps = make_deps(graph, Clock())
    plan = await sweep_stale_guests(deps)
    assert plan.status == "aborted"
    assert "6 of the 7 guests who redeemed" in plan.message and "STALE_ABORT_MISSING_ACTIVITY_PERCENT" in plan.message
    assert graph.writes == [] and graph.outbox == []


async def test_many_never_redeemed_invitations_do_not_abort_the_sweep() -> None:
    """Pending invitations have no signInActivity by nature: a tenant full of them is swept, not aborted."""
    pending = [
        guest(f"p{i}", days_inactive=None, external_user_state="PendingAcceptance", created=START - timedelta(days=9))
        for i in range(8)
    ]
    graph = FakeStaleGraph([*pending, guest("active", days_inactive=1), guest("stale", days_inactive=200)])
    plan = await sweep_stale_guests(make_deps(graph, Clock(), replace(REAL, max_percent=100)))
    assert plan.status == "applied", plan.message
    assert plan.guests_without_activity == 8 and plan.accepted_without_activity == 0


async def test_abort_when_graph_refuses_sign_in_activity() -> None:
    graph = tenant()
    graph.list_error = GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "no premium")
    plan = await sweep_stale_guests(make_deps(graph, Clock()))
    assert plan.status == "aborted"
    assert "AuditLog.Read.All" in plan.message
    assert graph.writes == []


async def test_crash_mid_sweep_then_rerun_does_every_action_exactly_once() -> None:
    graph = FakeStaleGraph([guest(f"g{i:02d}") for i in range(25)], page_size=100)  # one part: batches of 10
    clock = Clock()
    deps = make_deps(graph, clock)
    await sweep_stale_guests(deps)  # warn all 25
    clock.advance(14)
    graph.crash_on_batch = 2  # the second disable batch (users 11-20) dies on the wire
    try:
        await sweep_stale_guests(deps)
    except GraphError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the injected crash did not surface")
    assert graph.count("disable") == 10
    graph.crash_on_batch = None
    rerun = await sweep_stale_guests(deps)
    assert rerun.status == "applied" and rerun.slices == 2  # the same run, continued
    assert graph.count("disable") == 25 and graph.count("revoke") == 25
    assert sorted(w.split()[1] for w in graph.writes if w.startswith("disable")) == [f"g{i:02d}" for i in range(25)]
    done = [s for a, s, o in await audit(deps) if a == "stale-disable" and o == "done"]
    assert sorted(done) == [f"g{i:02d}" for i in range(25)]


async def test_action_recorded_in_ledger_but_not_in_stage_record_is_not_repeated() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    await sweep_stale_guests(deps)
    clock.advance(14)
    await sweep_stale_guests(deps)
    # a crash between the ledger's "done" and the stage record: the record still says "warned"
    await deps.state.put(RECORD_KIND, "stale-1", {"stage": "warned", "since": START.isoformat()}, etag="*")
    plan = await sweep_stale_guests(deps)
    assert [(i.user_id, i.outcome) for i in await items_of(deps, plan)] == [("stale-1", "already-done")]
    assert graph.count("disable stale-1") == 1
    record = await deps.state.get(RECORD_KIND, "stale-1")
    assert record is not None and record.value["stage"] == "disabled"


async def test_one_refused_action_does_not_stop_the_others_and_is_retried_next_run() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    await sweep_stale_guests(deps)
    clock.advance(14)
    graph.item_status["disable:stale-2"] = 403  # e.g. a privileged role holder
    plan = await sweep_stale_guests(deps)
    assert plan.status == "incomplete"
    assert {i.user_id: i.outcome.split(":")[0] for i in await items_of(deps, plan)} == {
        "stale-1": "done",
        "stale-2": "failed",
    }
    assert ("stale-disable", "stale-2", "failed") in await audit(deps)
    del graph.item_status["disable:stale-2"]
    await sweep_stale_guests(deps)
    assert graph.count("disable stale-2") == 1


async def test_guest_who_signs_in_while_disabled_is_re_enabled_and_forgotten() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    await sweep_stale_guests(deps)
    clock.advance(14)
    await sweep_stale_guests(deps)
    clock.advance(2)
    now = clock.now
    graph.users["stale-1"] = replace(graph.users["stale-1"], sign_in_activity=SignInActivity(now, None, None))
    plan = await sweep_stale_guests(deps)
    assert [(i.user_id, str(i.action), i.reason) for i in await items_of(deps, plan)] == [
        ("stale-1", "reactivate", "active-again")
    ]
    assert graph.users["stale-1"].account_enabled is True
    assert await deps.state.get(RECORD_KIND, "stale-1") is None
    clock.advance(30)
    await sweep_stale_guests(deps)
    assert "stale-1" not in graph.deleted and "stale-2" in graph.deleted


async def test_restore_run_brings_back_the_deleted_enabled_and_restarts_their_clock() -> None:
    graph, clock = tenant(), Clock()
    deps = make_deps(graph, clock)
    for days in (0, 14, 30):
        clock.advance(days)
        plan = await sweep_stale_guests(deps)
    assert sorted(graph.deleted) == ["stale-1", "stale-2"]
    outcomes = await restore_run(plan.run_id, deps)
    assert sorted((o.user_id, o.status) for o in outcomes) == [("stale-1", "restored"), ("stale-2", "restored")]
    assert graph.deleted == {}
    assert graph.users["stale-1"].account_enabled is True
    assert (await restore_run(plan.run_id, deps))[0].status == "already-done"  # nothing left to undo
    clock.advance(1)
    assert await items_of(deps, await sweep_stale_guests(deps)) == []  # not warned again the next night


async def test_restore_refuses_users_guestwarden_did_not_touch() -> None:
    graph, clock = tenant(), Clock()
    outcome = await restore_guest("active", make_deps(graph, clock))
    assert outcome.status == "not-ours"
    assert graph.writes == []


async def test_attacker_controlled_names_are_escaped_in_mail_and_report_and_defused_in_csv() -> None:
    evil = "<img src=x onerror=alert(1)>"
    graph = FakeStaleGraph([guest("g1", display_name=evil), guest("g2", display_name='=HYPERLINK("http://x")')])
    graph.sponsors["g1"] = [DirectoryContact("s1", "Adele", "adele@contoso.com")]
    reports = MemoryReportStore()
    await sweep_stale_guests(make_deps(graph, Clock(), reports=reports))
    mail = graph.outbox[0]
    assert evil not in mail.body and "&lt;img src=x onerror=alert(1)&gt;" in mail.body
    html = next(v for k, v in reports.files.items() if k.endswith(".html")).decode()
    assert evil not in html and "&lt;img" in html
    csv_text = next(v for k, v in reports.files.items() if k.endswith(".csv")).decode("utf-8-sig")
    rows = {row["userId"]: row for row in csv.DictReader(io.StringIO(csv_text))}
    assert rows["g2"]["displayName"] == '\'=HYPERLINK("http://x")'


def test_csv_cell_defuses_every_formula_prefix() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "plain", None)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "plain",
        "",
    ]


async def test_guest_is_mailed_only_when_configured() -> None:
    graph = tenant()
    await sweep_stale_guests(make_deps(graph, Clock(), replace(REAL, notify_guest=True)))
    assert sorted(m.to for m in graph.outbox) == [
        ("adele@contoso.com",),
        ("stale-1@fabrikam.com",),
        ("stale-2@fabrikam.com",),
    ]


async def test_the_sweep_report_shows_the_latest_posture_escaped_and_leaves_it_out_before_the_first_run() -> None:
    from shared.domain.posture import Check, PostureReport, Status
    from shared.services.posture import save_posture

    reports, clock = MemoryReportStore(), Clock()
    deps = make_deps(tenant(), clock, reports=reports)
    await sweep_stale_guests(deps)
    html = next(v for k, v in reports.files.items() if k.endswith(".html")).decode()
    assert "Guest posture" not in html  # the posture timer has not run yet: no section, no failure

    evil = "<img src=x onerror=alert(1)>"
    finding = Check(
        "guest-mfa",
        "MFA for guests (Conditional Access)",
        Status.FAIL,
        "no policy requires MFA of guests",
        (f"'{evil}': report-only",),
        "create the policy",
        "Entra admin center > Protection > Conditional Access",
    )
    await save_posture(deps.state, PostureReport(START, (finding,)))
    clock.advance(1)
    reports.files.clear()
    await sweep_stale_guests(deps)
    html = next(v for k, v in reports.files.items() if k.endswith(".html")).decode()
    assert "<h2>Guest posture</h2>" in html
    assert "MFA for guests (Conditional Access)</td><td>fail</td>" in html
    assert "Entra admin center &gt; Protection &gt; Conditional Access" in html
    assert evil not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
