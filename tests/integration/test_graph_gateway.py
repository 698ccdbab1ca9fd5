"""The Graph gateway driving the local simulator through the real msgraph-sdk, over HTTP.

Every test goes through msgraph-sdk's middleware (retry handler included), the simulator's HTTP server and
Graph's JSON shapes: what passes here is what the flows will see from graph.microsoft.com.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import math
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from local.fixtures.generate import DEFAULT_NOW, write_tenant
from local.graph_sim import GraphSimulator
from local.graph_sim.clock import parse_dt
from local.graph_sim.notifications import SIM_CREATOR_ID
from local.world import eventually
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import BatchOps, BatchRequest, GraphConfig, GraphError, GraphGateway
from shared.domain.directory import OutgoingMail

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())
NAMED: dict[str, str] = TENANT["named"]
HINTS: dict[str, str] = TENANT["hints"]
GUESTS = [u for u in TENANT["users"] if u.get("userType") == "Guest"]

pytestmark = pytest.mark.timeout(60)


def _count(sim: GraphSimulator, key: str) -> int:
    return sim.requests.get(key, 0)


async def test_get_user_returns_domain_user_and_none_when_unknown(gateway: GraphGateway) -> None:
    guest = await gateway.get_user(NAMED["accepted-unlicensed"])
    assert guest is not None and guest.is_guest and guest.has_accepted
    assert guest.assigned_sku_ids == frozenset()
    member_ext = await gateway.get_user(NAMED["member-ext"])
    assert member_ext is not None
    assert "#EXT#" in (member_ext.user_principal_name or "")
    assert not member_ext.is_guest  # userType decides, never the UPN
    assert await gateway.get_user("00000000-0000-0000-0000-000000000000") is None


@pytest.fixture(scope="module")
def large_tenant() -> dict[str, object]:
    """700 guests: more than one page in every reading of the signInActivity page size."""
    buffer = io.StringIO()
    write_tenant(buffer, guests=700, seed=5, now=parse_dt(DEFAULT_NOW))
    tenant: dict[str, object] = json.loads(buffer.getvalue())
    return tenant


@pytest.mark.parametrize(
    ("mode", "page", "refusals"),
    [("refuse-above-500", 500, 0), ("cap-500", 500, 0), ("refuse-above-120", 120, 1), ("cap-120", 120, 0)],
)
async def test_every_guest_is_read_once_whatever_page_size_graph_plays(
    large_tenant: dict[str, object], mode: str, page: int, refusals: int
) -> None:
    """Whatever reading of the page-size rule Graph plays (contract_queries.SIGN_IN_ACTIVITY_PAGING), every guest
    is read once: the gateway asks for 500 (user-list.md), takes what comes, and asks smaller if refused."""
    with GraphSimulator(copy.deepcopy(large_tenant)).start() as sim:
        sim.sign_in_activity_paging = mode
        # a page-size test, not a quota test (13 pages with signInActivity): the quota is off on both sides
        sim.throttling.configure(sign_in_activity_per_minute=None)
        guests = sorted(uid for uid, u in sim.store.users.items() if u.get("userType") == "Guest")
        config = GraphConfig(base_url=sim.base_url, max_retries=0, sign_in_activity_per_minute=0)
        async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gateway:
            page_sizes: list[int] = []
            for _ in range(2):  # the second scan keeps the size the first one learnt: no second refusal
                seen: list[str] = []
                async for chunk in gateway.iter_guest_pages(with_sign_in_activity=True):
                    page_sizes.append(len(chunk))
                    assert all(u.is_guest for u in chunk)
                    seen.extend(u.id for u in chunk)
                assert sorted(seen) == guests
        assert max(page_sizes) == page
        assert _count(sim, "GET /users") == 2 * math.ceil(len(guests) / page) + refusals


async def test_guests_stream_page_by_page_with_sign_in_activity(gateway: GraphGateway, sim: GraphSimulator) -> None:
    seen: list[str] = []
    async for page in gateway.iter_guest_pages(with_sign_in_activity=True):
        assert all(u.is_guest for u in page)
        seen.extend(u.id for u in page)
    assert sorted(seen) == sorted(u["id"] for u in GUESTS)
    stale = next(u for u in GUESTS if u["id"] == NAMED["active-noninteractive"])
    assert stale.get("signInActivity")  # the fixture case this test leans on


async def test_last_activity_reads_every_sign_in_kind(gateway: GraphGateway) -> None:
    user = await gateway.get_user(NAMED["active-noninteractive"], select=("id", "userType", "signInActivity"))
    assert user is not None and user.sign_in_activity is not None
    activity = user.sign_in_activity
    assert activity.latest == max(
        t for t in (activity.last_sign_in, activity.last_non_interactive_sign_in, activity.last_successful_sign_in) if t
    )
    assert activity.latest == activity.last_non_interactive_sign_in


async def test_licence_needs_usage_location_then_takes_exactly_one_seat(gateway: GraphGateway) -> None:
    sku = HINTS["guestSkuId"]
    user_id = NAMED["accepted-no-location"]
    with pytest.raises(GraphError) as caught:
        await gateway.assign_license(user_id, sku)
    assert caught.value.status == 400
    assert "invalid usage location" in caught.value.message

    before = {s.sku_id: s.free_units for s in await gateway.list_subscribed_skus()}[sku]
    await gateway.set_usage_location(user_id, "DE")
    await gateway.assign_license(user_id, sku)
    await gateway.assign_license(user_id, sku)  # again: no second seat
    after = {s.sku_id: s.free_units for s in await gateway.list_subscribed_skus()}[sku]
    assert before - after == 1
    user = await gateway.get_user(user_id)
    assert user is not None and user.usage_location == "DE" and sku in user.assigned_sku_ids


async def test_no_free_seats_is_a_clear_error(gateway: GraphGateway, sim: GraphSimulator) -> None:
    sku = HINTS["guestSkuId"]
    free = {s.sku_id: s.free_units for s in await gateway.list_subscribed_skus()}[sku]
    candidates = [
        u["id"]
        for u in GUESTS
        if u.get("usageLocation") and not u.get("assignedLicenses") and u.get("externalUserState") == "Accepted"
    ]
    assert len(candidates) > free, "the fixture must have more licensable guests than free seats"
    for user_id in candidates[:free]:
        await gateway.assign_license(user_id, sku)
    with pytest.raises(GraphError) as caught:
        await gateway.assign_license(candidates[free], sku)
    assert caught.value.status == 400
    assert "does not have any available licenses" in caught.value.message


async def test_a_429_storm_is_ridden_out_honouring_retry_after(gateway: GraphGateway, sim: GraphSimulator) -> None:
    sim.faults.fail_next(2, status=429, retry_after_s=1, route="GET /users/{id}")
    user = await gateway.get_user(NAMED["accepted-licensed"])
    assert user is not None
    assert _count(sim, "GET /users/{id}") == 3  # two throttled answers, then the real one


async def test_throttling_beyond_the_retry_budget_surfaces_as_graph_error(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    sim.faults.fail_next(10, status=429, retry_after_s=1, route="GET /users/{id}")
    with pytest.raises(GraphError) as caught:
        await gateway.get_user(NAMED["accepted-licensed"])
    assert caught.value.throttled
    assert caught.value.code == "TooManyRequests"
    assert caught.value.retry_after == 1
    assert _count(sim, "GET /users/{id}") == 4  # first try + GRAPH_MAX_RETRIES=3


async def test_send_mail_is_not_replayed_after_a_5xx_but_is_after_a_429(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    sender = sim.user(NAMED["mailer"])["userPrincipalName"]
    mail = OutgoingMail(sender=sender, to=("guest@fabrikam.com",), subject="Hello", body="<p>hi</p>")
    sim.faults.fail_next(1, status=503, route="POST /users/{id}/sendMail")
    with pytest.raises(GraphError) as caught:
        await gateway.send_mail(mail)
    assert caught.value.status == 503
    assert _count(sim, "POST /users/{id}/sendMail") == 1  # the mail may have gone: never sent twice blindly
    assert sim.outbox == []

    sim.faults.fail_next(1, status=429, retry_after_s=1, route="POST /users/{id}/sendMail")
    await gateway.send_mail(mail)
    assert _count(sim, "POST /users/{id}/sendMail") == 3
    assert len(sim.outbox) == 1
    assert sim.outbox[0]["message"]["subject"] == "Hello"


async def test_batch_runs_20_per_request_with_mixed_per_item_results(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    targets = [u["id"] for u in GUESTS[:44]]
    requests = [BatchOps.disable(uid) for uid in targets]
    requests.append(BatchOps.disable("00000000-0000-0000-0000-000000000000"))
    # Three inner requests throttled: the executor re-submits just those after Retry-After.
    sim.faults.fail_next(3, status=429, retry_after_s=1, route="BATCH PATCH /users/{id}")
    results = await gateway.batch(requests)

    assert [r.id for r in results] == [r.id for r in requests]
    assert all(r.ok for r in results[:44])
    missing = results[-1]
    assert missing.status == 404 and missing.error is not None and missing.error.code == "Request_ResourceNotFound"
    assert all(sim.user(uid)["accountEnabled"] is False for uid in targets)
    assert _count(sim, "POST /$batch") == 3 + 1  # ceil(45 / 20) batches + one round for the throttled items
    assert _count(sim, "BATCH PATCH /users/{id}") == 45 + 3


async def test_batch_reports_items_still_throttled_after_every_round(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    sim.faults.fail_next(100, status=429, retry_after_s=1, route="BATCH DELETE /users/{id}")
    results = await gateway.batch([BatchOps.soft_delete(NAMED["stale-all"])])
    assert results[0].status == 429 and results[0].error is not None and results[0].error.throttled
    assert _count(sim, "BATCH DELETE /users/{id}") == 3  # GRAPH_BATCH_MAX_ROUNDS
    assert sim.user(NAMED["stale-all"])["id"] == NAMED["stale-all"]  # nothing deleted


async def test_batch_refuses_duplicate_ids(gateway: GraphGateway) -> None:
    with pytest.raises(ValueError, match="unique"):
        await gateway.batch([BatchRequest("a", "GET", "/users/x"), BatchRequest("a", "GET", "/users/y")])


async def test_disable_revoke_delete_and_restore(gateway: GraphGateway, sim: GraphSimulator) -> None:
    user_id = NAMED["stale-all"]
    await gateway.set_account_enabled(user_id, False)
    await gateway.revoke_sessions(user_id)
    assert sim.user(user_id)["accountEnabled"] is False
    await gateway.soft_delete_user(user_id)
    assert await gateway.get_user(user_id) is None
    restored = await gateway.restore_user(user_id)
    assert restored.id == user_id
    again = await gateway.get_user(user_id)
    assert again is not None and again.is_guest


async def test_sponsors_single_and_batched(gateway: GraphGateway) -> None:
    sponsored = NAMED["sponsored-stale"]
    single = await gateway.list_sponsors(sponsored)
    assert {s.id for s in single} & {NAMED["sponsor-adele"], NAMED["sponsor-alex"]}
    many = await gateway.sponsors_of([sponsored, NAMED["accepted-unlicensed"]])
    assert [s.id for s in many[sponsored]] == [s.id for s in single]
    assert isinstance(many[NAMED["accepted-unlicensed"]], list)


async def test_a_sponsor_group_stands_for_its_members(gateway: GraphGateway, sim: GraphSimulator) -> None:
    """user-list-sponsors.md: a sponsor may be a group. Its members are the people told, each marked via_group."""
    by_group = NAMED["sponsored-by-group"]
    group = NAMED["group-partner-managers"]
    raw = await gateway.list_sponsors(by_group)
    assert [s.id for s in raw] == [group]  # what Graph lists: the group itself
    many = await gateway.sponsors_of([by_group, NAMED["sponsored-stale"]])
    assert {(s.id, s.via_group) for s in many[by_group]} == {
        (NAMED["sponsor-adele"], group),
        (NAMED["member-lynne"], group),
    }
    assert all(s.mail for s in many[by_group])
    assert all(s.via_group is None for s in many[NAMED["sponsored-stale"]])
    # the same person sponsoring directly and through a group is told once
    sim.store.users[by_group]["sponsors"].append(NAMED["sponsor-adele"])
    again = await gateway.sponsors_of([by_group])
    assert sorted(s.id for s in again[by_group]) == sorted([NAMED["sponsor-adele"], NAMED["member-lynne"]])


async def test_group_member_add_is_idempotent(gateway: GraphGateway, sim: GraphSimulator) -> None:
    # group-mode licensing's role (the sample identity is set up for sku mode); set before the first token
    sim.set_graph_roles([*sim.granted_roles(SIM_CREATOR_ID), "GroupMember.ReadWrite.All"])
    group = HINTS["licensingGroupId"]
    assert await gateway.add_group_member(group, NAMED["accepted-unlicensed"]) is True
    assert await gateway.add_group_member(group, NAMED["accepted-unlicensed"]) is False


async def test_sign_ins_in_a_window(gateway: GraphGateway, sim: GraphSimulator) -> None:
    now = sim.clock.now()
    seen = []
    async for page in gateway.iter_sign_in_pages(now - timedelta(days=30), now):
        seen.extend(page)
    assert seen, "the fixture has recent sign-ins"
    assert all(now - timedelta(days=30) <= s.created <= now for s in seen)
    assert [s.created for s in seen] == sorted((s.created for s in seen), reverse=True)
    risky = [s for s in seen if s.error_code == 53011]
    assert risky and all(s.home_tenant_id and s.home_tenant_id != s.resource_tenant_id for s in risky)


async def test_users_delta_from_now_sees_later_changes_and_expires(gateway: GraphGateway, sim: GraphSimulator) -> None:
    start = await gateway.users_delta(start_from_now=True)
    assert start.delta_link and not start.changed
    sim.update_user(NAMED["pending-recent"], externalUserState="Accepted")
    page = await gateway.users_delta(start.delta_link)
    while page.next_link:
        page = await gateway.users_delta(page.next_link)
    changed = {u.id: u for u in page.changed}
    assert NAMED["pending-recent"] in changed
    # the $select of the first request rides along: the backstop can tell an accepted guest
    assert changed[NAMED["pending-recent"]].is_guest and changed[NAMED["pending-recent"]].has_accepted
    assert page.delta_link

    sim.clock.advance(timedelta(days=8))
    with pytest.raises(GraphError) as caught:
        await gateway.users_delta(page.delta_link)
    assert caught.value.code == "syncStateNotFound"


async def test_a_delta_sync_reset_names_where_to_restart_and_only_on_this_graph(
    gateway: GraphGateway, sim: GraphSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = await gateway.users_delta(start_from_now=True)
    sim.expire_delta_links("syncReset")
    with pytest.raises(GraphError) as caught:
        await gateway.users_delta(start.delta_link)
    assert caught.value.status == 410 and caught.value.location
    assert caught.value.location.startswith(f"{sim.base_url}/users/delta")
    restarted = await gateway.users_delta(caught.value.location)  # Graph's restart point: a full round
    assert restarted.changed or restarted.next_link

    async def foreign_reset(operation: str, call: object) -> None:
        raise GraphError(410, "resyncRequired", "reset", location="https://elsewhere.example/v1.0/users/delta")

    monkeypatch.setattr(gateway, "_call", foreign_reset)
    with pytest.raises(GraphError) as foreign:
        await gateway.users_delta(start.delta_link)
    assert foreign.value.status == 410 and foreign.value.location is None  # a token never follows it


async def test_full_delta_pass_lists_every_user(gateway: GraphGateway) -> None:
    ids: set[str] = set()
    page = await gateway.users_delta()
    ids.update(u.id for u in page.changed)
    while page.next_link:
        page = await gateway.users_delta(page.next_link)
        ids.update(u.id for u in page.changed)
    assert page.delta_link
    assert ids >= {u["id"] for u in GUESTS}


async def test_unauthenticated_requests_are_refused_by_the_simulator(sim: GraphSimulator) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        response = await client.get(f"{sim.base_url}/users")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"


async def test_a_429_on_any_call_holds_every_caller_and_no_request_leaves_early(
    contoso_tenant: dict[str, object],
) -> None:
    """GRAPH-FACTS.md: msgraph-sdk's RetryHandler retries a 429 where no httpx hook sees it. The gateway switches
    it off and owns every retry, so a 429 on a plain `get_user` holds the concurrent page reads too."""
    from bench.sim_process import TimedSimulator

    sim = TimedSimulator(copy.deepcopy(contoso_tenant)).start()
    try:
        sim.faults.fail_next(1, status=429, retry_after_s=2, route="GET /users/{id}")
        config = GraphConfig(base_url=sim.base_url, max_retries=3)
        async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gateway:
            throttled = asyncio.create_task(gateway.get_user(NAMED["stale-all"]))
            assert await eventually(lambda: bool(sim.throttles), timeout_s=10)  # its 429 went out ...
            # ... and is well under way (the simulator counts arrivals from 0.2 s after a 429 as early)
            assert await eventually(lambda: time.monotonic() - sim.throttles[0][0] > 0.3, timeout_s=10)
            guests = sum([len(p) async for p in gateway.iter_guest_pages(with_sign_in_activity=False)])
            user = await throttled
        assert user is not None and guests == len(GUESTS)
        assert sim.requests["GET /users/{id}"] == 2  # the 429, then the retry: the gateway's, seen by its hook
        assert sim.throttles and sim.early_requests() == []  # nothing went out while the Retry-After ran
    finally:
        sim.stop()


async def test_the_gateway_keeps_to_the_sign_in_activity_quota_instead_of_provoking_429s(
    large_tenant: dict[str, object],
) -> None:
    """Graph allows 10 requests reading signInActivity a minute (throttling-limits.md): 12 pages take two windows,
    without a single 429. Both sides run the quota 5 times faster (a minute is 12 s; the pacer's edge margin,
    240 ms, dwarfs the time a request takes to arrive even on a loaded machine)."""
    with GraphSimulator(copy.deepcopy(large_tenant)).start() as sim:
        sim.sign_in_activity_paging = "cap-120"
        sim.throttling.configure(time_scale=5.0)
        config = GraphConfig(base_url=sim.base_url, max_retries=0, quota_time_scale=5.0)
        async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gateway:
            started = time.monotonic()
            pages = 0
            for _ in range(2):
                pages += len([p async for p in gateway.iter_guest_pages(with_sign_in_activity=True)])
            elapsed = time.monotonic() - started
        assert pages == 12 and sim.throttling.throttled == {}
        assert elapsed >= 60.0 / 5.0  # the 11th page waited for the first to leave the window


def test_a_sponsor_group_is_limited_information_without_a_group_read_role(
    graph_sim: GraphSimulator, graph_http_as: Any
) -> None:
    """includes/limited-info.md: with only User.Read.All a group sponsor is its @odata.type and id; its members
    are what guestwarden tells, so nothing depends on the group's own properties."""
    sponsored = graph_sim.named("sponsored-by-group")
    plain = graph_http_as("User.Read.All").get(f"/users/{sponsored}/sponsors").json()["value"]
    assert plain == [{**{key: None for key in plain[0]}, "@odata.type": "#microsoft.graph.group", "id": plain[0]["id"]}]
    full = graph_http_as("User.Read.All", "GroupMember.Read.All").get(f"/users/{sponsored}/sponsors").json()
    assert full["value"][0]["displayName"] == "Partner Managers"
