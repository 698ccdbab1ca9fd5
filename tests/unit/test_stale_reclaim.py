"""Licence reclaim on fakes: a disabled guest holds no seat; a returning guest gets its licences back when seats
allow, and the admins hear of it when they do not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.domain.directory import DirectoryUser, SignInActivity, SubscribedSku
from shared.domain.stale import Reclaim, StalePolicy, reclaim_of
from shared.ports.graph import BatchResult
from shared.services.licensing import Alerting
from shared.services.stale import RECORD_KIND, StaleConfig, restore_guest, sweep_stale_guests
from shared.services.stale.reclaim import reclaimed_from
from tests.unit.fakes_stale import FakeStaleGraph, items_of
from tests.unit.test_stale_service import POLICY, START, Clock, audit, guest, make_deps

SKU = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"
GROUP_SKU = "6fd2c87f-b296-42f0-b197-1e91e994b900"
LICENSING_GROUP = "ca980d17-d628-5da6-a8b1-b1d630d894c0"
RECLAIM = replace(POLICY, reclaim_licenses=True, licensing_group_id=LICENSING_GROUP)
REAL = StaleConfig(
    dry_run=False,
    max_actions=100,
    max_percent=100,
    mail_sender="guestwarden@contoso.com",
    alerting=Alerting("guestwarden@contoso.com", ("megan@contoso.com",)),
)


def licensed(user_id: str, **props: Any) -> DirectoryUser:
    """A stale guest with one direct licence and one inherited from the licensing group."""
    values: dict[str, Any] = {
        "assigned_sku_ids": frozenset({SKU, GROUP_SKU}),
        "direct_sku_ids": frozenset({SKU}),
        "licensing_group_ids": frozenset({LICENSING_GROUP}),
    }
    return guest(user_id, **{**values, **props})


def world(seats: int = 5, policy: StalePolicy = RECLAIM) -> tuple[FakeStaleGraph, Clock, Any]:
    graph = FakeStaleGraph([licensed("lic-1"), guest("plain")])
    graph.groups[LICENSING_GROUP] = {"lic-1"}
    graph.skus[SKU] = SubscribedSku(
        SKU, "GUEST_SKU", enabled_units=seats, consumed_units=seats, capability_status="Enabled"
    )
    clock = Clock()
    return graph, clock, make_deps(graph, clock, REAL, policy=policy)


def test_reclaim_of_takes_direct_skus_and_only_the_licensing_group() -> None:
    user = licensed("u", licensing_group_ids=frozenset({LICENSING_GROUP, "other-group"}))
    assert reclaim_of(user, RECLAIM) == Reclaim((SKU,), (LICENSING_GROUP,))
    assert reclaim_of(user, POLICY) == Reclaim()  # off
    unread = guest("u", assigned_sku_ids=frozenset({SKU}))  # licenseAssignmentStates not read: nothing known
    assert reclaim_of(unread, RECLAIM) == Reclaim()


async def test_a_disable_takes_the_licences_back_in_the_same_batch_and_records_them() -> None:
    graph, clock, deps = world()
    await sweep_stale_guests(deps)  # warn
    clock.advance(14)
    calls = graph.batch_calls
    plan = await sweep_stale_guests(deps)
    assert plan.licences_to_reclaim == 2 and plan.as_json()["licencesToReclaim"] == 2
    assert graph.batch_calls == calls + 1  # disable, revoke, unlicense, leave: one $batch for both guests
    assert f"unlicense lic-1 {SKU}" in graph.writes and f"leave {LICENSING_GROUP} lic-1" in graph.writes
    assert graph.users["lic-1"].direct_sku_ids == frozenset() and graph.skus[SKU].consumed_units == 4
    record = await deps.state.get(RECORD_KIND, "lic-1")
    assert record is not None and record.value["reclaimed"] == {"skus": [SKU], "groups": [LICENSING_GROUP]}
    [entry] = [e async for e in deps.state.query(START) if e.action == "stale-disable" and e.subject == "lic-1"]
    assert entry.evidence["reclaimed"] == {"skus": [SKU], "groups": [LICENSING_GROUP]}
    assert not [w for w in graph.writes if w.startswith(("unlicense plain", "leave")) and "plain" in w]


async def test_the_dry_run_shows_the_reclaim_and_takes_nothing() -> None:
    graph, clock, deps = world()
    await sweep_stale_guests(deps)
    clock.advance(14)
    plan = await sweep_stale_guests(deps, dry_run=True)
    [item] = [i for i in await items_of(deps, plan) if i.user_id == "lic-1"]
    assert item.evidence["reclaim"] == {"skus": [SKU], "groups": [LICENSING_GROUP]}
    assert not [w for w in graph.writes if w.startswith(("unlicense", "leave"))]
    files = deps.reports.files  # the CSV and HTML reports show what would be taken back
    [csv_report] = [v.decode("utf-8-sig") for k, v in files.items() if k == f"stale-{plan.run_id}.csv"]
    [html_report] = [v.decode() for k, v in files.items() if k == f"stale-{plan.run_id}.html"]
    assert "licencesTakenBack" in csv_report and f"{SKU} {LICENSING_GROUP}" in csv_report
    assert f"{SKU}, {LICENSING_GROUP}" in html_report and "Licences taken back with the disables" in html_report


async def test_a_guest_who_signs_in_again_gets_its_licences_back() -> None:
    graph, clock, deps = world()
    await sweep_stale_guests(deps)
    clock.advance(14)
    await sweep_stale_guests(deps)
    clock.advance(1)
    now = clock()
    graph.users["lic-1"] = replace(graph.users["lic-1"], sign_in_activity=SignInActivity(now, now, now))
    await sweep_stale_guests(deps)
    user = graph.users["lic-1"]
    assert user.account_enabled is True and SKU in (user.direct_sku_ids or ())
    assert "lic-1" in graph.groups[LICENSING_GROUP] and graph.skus[SKU].consumed_units == 5
    assert ("stale-licence-return", "lic-1", "done") in await audit(deps)


async def test_no_free_seat_leaves_the_licence_out_and_tells_the_admins() -> None:
    graph, clock, deps = world()
    await sweep_stale_guests(deps)
    clock.advance(14)
    await sweep_stale_guests(deps)
    graph.skus[SKU] = replace(graph.skus[SKU], consumed_units=5)  # someone took the freed seat meanwhile
    outcome = await restore_guest("lic-1", deps)
    assert outcome.status == "re-enabled" and "no seat" in outcome.detail
    assert graph.users["lic-1"].account_enabled is True and SKU not in (graph.users["lic-1"].direct_sku_ids or ())
    assert "lic-1" in graph.groups[LICENSING_GROUP]  # group licensing handles its own seats
    [alert] = [m for m in graph.outbox if m.to == ("megan@contoso.com",)]
    assert "lic-1" in alert.subject and SKU in alert.body
    assert ("stale-licence-return", "lic-1", "no-seat") in await audit(deps)


async def test_reclaim_off_takes_nothing() -> None:
    graph, clock, deps = world(policy=POLICY)
    await sweep_stale_guests(deps)
    clock.advance(14)
    await sweep_stale_guests(deps)
    assert graph.users["lic-1"].account_enabled is False
    assert graph.users["lic-1"].direct_sku_ids == frozenset({SKU})
    assert not [w for w in graph.writes if w.startswith(("unlicense", "leave"))]


def test_a_licence_already_gone_counts_as_taken() -> None:
    """An earlier attempt (killed before it recorded anything) took it: Graph answers 400 / 404 now."""
    reclaim = Reclaim((SKU,), (LICENSING_GROUP,))
    results = {
        "unlicense:u": BatchResult(
            "unlicense:u", 400, {"error": {"message": "User does not have a corresponding license."}}
        ),
        f"leave:{LICENSING_GROUP}:u": BatchResult(f"leave:{LICENSING_GROUP}:u", 404),
    }
    assert reclaimed_from("u", reclaim, results) == (reclaim, [])


async def test_a_refused_reclaim_is_audited_and_does_not_block_the_disable() -> None:
    graph, clock, deps = world()
    await sweep_stale_guests(deps)
    clock.advance(14)
    graph.item_status[f"leave:{LICENSING_GROUP}:lic-1"] = 403
    await sweep_stale_guests(deps)
    assert graph.users["lic-1"].account_enabled is False
    [entry] = [e async for e in deps.state.query(START) if e.action == "stale-disable" and e.subject == "lic-1"]
    assert entry.outcome == "done" and entry.evidence["reclaimed"] == {"skus": [SKU], "groups": []}
    assert entry.evidence["reclaimFailed"] and "group" in entry.evidence["reclaimFailed"][0]
    record = await deps.state.get(RECORD_KIND, "lic-1")
    assert record is not None and record.value["reclaimed"] == {"skus": [SKU], "groups": []}  # only what it took
