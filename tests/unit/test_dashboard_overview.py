"""The dashboard's overview from guestwarden's aggregates (in-memory state; the browser tests check the same page
in Chromium): it reads the tally, never the stage records, once a sweep has built it; and it says how the
subscription, the seats and the census stand."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.templates import DashboardTemplates
from shared.domain.census import RunSummary
from shared.domain.dashboard import READER, client_principal_header
from shared.domain.directory import SubscribedSku
from shared.domain.stale import Stage, StageMemory, StalePolicy
from shared.ports.state import ANY_ETAG, Record
from shared.services.census import STAGE_KIND, record_seats, sweep_finished, write_stage
from shared.services.dashboard import (
    SUBSCRIPTION_KEY,
    SUBSCRIPTION_KIND,
    DashboardConfig,
    DashboardDeps,
    DashboardRequest,
    handle_dashboard,
)
from tests.fakes.state import MemoryStateStore

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
READER_HEADER = {"X-MS-CLIENT-PRINCIPAL": client_principal_header("reader@contoso.com", [READER])}


class CountingStore(MemoryStateStore):
    """Remembers which kinds were listed (a listing grows with the tenant; the overview must not do one)."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.listed: list[str] = []

    async def list_records(self, kind: str) -> AsyncIterator[Record]:
        self.listed.append(kind)
        async for record in super().list_records(kind):
            yield record


class NoNames:
    async def names(self, user_ids: list[str]) -> dict[str, str]:
        return {}


async def _no_restore(run_id: str, actor: str) -> list:  # type: ignore[type-arg]
    raise AssertionError("the overview only reads")


def deps(state: MemoryStateStore) -> DashboardDeps:
    config = DashboardConfig(
        "overview-test-key-0123456789abcdef", "https://gw.example", renew_before=timedelta(hours=24)
    )
    return DashboardDeps(state, DashboardTemplates(), NoNames(), config, StalePolicy(), lambda: NOW, _no_restore)


async def overview(state: MemoryStateStore) -> str:
    reply = await handle_dashboard(DashboardRequest("GET", "", {}, {}, READER_HEADER), deps(state))
    assert reply.status == 200
    return reply.body.decode()


def shown(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, element_id
    return found.group(1).strip()


async def test_before_any_sweep_the_stage_records_are_counted_then_only_the_tally_is_read() -> None:
    state = CountingStore()
    for i in range(3):
        await write_stage(state, f"g{i}", StageMemory(Stage.WARNED, NOW - timedelta(days=20)))
    html = await overview(state)
    assert shown(html, "in-lifecycle") == "3" and STAGE_KIND in state.listed
    assert shown(html, "due-total") == "3"  # warned 20 days ago: the disable is overdue
    run = RunSummary("r1", NOW - timedelta(hours=7), True, "dry-run")
    await sweep_finished(state, lambda: NOW, run, None, None)  # what every sweep does at its end
    await write_stage(state, "g3", StageMemory(Stage.DISABLED, NOW))
    state.listed.clear()
    html = await overview(state)
    assert shown(html, "in-lifecycle") == "4" and STAGE_KIND not in state.listed
    assert state.listed == ["risk-guest"]  # the open incidents: one record per guest with one


async def test_the_census_shows_the_guests_by_invitation_state_and_the_last_runs() -> None:
    state = CountingStore()
    html = await overview(state)
    assert "not counted yet" in shown(html, "guests-total") and "no real run yet" in html
    run = RunSummary("20260601T020000Z-abc123", NOW - timedelta(hours=7), False, "applied", "", {"done": 4})
    await sweep_finished(state, lambda: NOW, run, (120, {"accepted": 100, "pending": 20}, {"a.com": 120}), None)
    html = await overview(state)
    assert shown(html, "guests-total") == "120" and 'data-invitation="pending">20<' in html
    assert shown(html, "last-run") == run.run_id and shown(html, "last-run-status") == "applied"


async def test_seats_show_what_is_free_and_a_full_sku_stands_out() -> None:
    state = CountingStore()
    assert "not read yet" in shown(await overview(state), "seats")
    skus = [SubscribedSku("s1", "SPE_E3", 10, 10, "Enabled", "User"), SubscribedSku("s2", "EMS", 20, 5, "Enabled")]
    await record_seats(state, skus, NOW)
    html = await overview(state)
    assert re.search(r'data-free="SPE_E3" class="bad">0<', html) and 'data-free="EMS" class="">15<' in html


@pytest.mark.parametrize(
    ("expires_in", "health"),
    [
        (None, "missing"),
        (timedelta(hours=-1), "expired"),
        (timedelta(hours=5), "renewal due"),
        (timedelta(days=2), "healthy"),
    ],
)
async def test_the_subscription_is_judged_against_the_keepers_renewal_window(
    expires_in: timedelta | None, health: str
) -> None:
    state = CountingStore()
    if expires_in is not None:
        value = {"id": "sub-1", "expiresAt": (NOW + expires_in).isoformat()}
        await state.put(SUBSCRIPTION_KIND, SUBSCRIPTION_KEY, value, etag=ANY_ETAG)
    assert shown(await overview(state), "subscription") == health


async def test_guests_are_found_by_the_name_the_sweep_recorded_on_any_page_and_a_restore_keeps_it() -> None:
    state = CountingStore()
    for i, name in enumerate(["Ada Fabrikam", "Bo Tailspin", "Cy Fabrikam"]):
        await write_stage(state, f"g{i}", StageMemory(Stage.WARNED, NOW - timedelta(days=i), name=name))
    await write_stage(state, "g1", StageMemory(Stage.RESTORED, NOW))  # a restore does not know the name
    one_per_page = DashboardConfig("overview-test-key-0123456789abcdef", "https://gw.example", page_size=1)
    search = DashboardRequest("GET", "guests", {"q": "tailspin"}, {}, READER_HEADER)
    page = await handle_dashboard(search, replace(deps(state), config=one_per_page))
    assert page.status == 200 and "Bo Tailspin" in page.body.decode() and "1 guest(s)" in page.body.decode()
    search = DashboardRequest("GET", "guests", {"q": "FABRIKAM", "page": "2"}, {}, READER_HEADER)
    html = (await handle_dashboard(search, replace(deps(state), config=one_per_page))).body.decode()
    assert "Cy Fabrikam" in html and "Ada Fabrikam" not in html and "page 2 of 2" in html  # newest first


async def test_a_runs_reports_are_served_from_the_report_store_and_nothing_else_is() -> None:
    from tests.unit.fakes_stale import MemoryReportStore

    store = MemoryReportStore()
    run = "20260601T020000Z-abc123"
    await store.write(f"stale-{run}.html", b"<html><style>td{}</style><title>stale run</title></html>", "text/html")
    await store.write(f"stale-{run}.csv", b"\xef\xbb\xbfuserId\r\n", "text/csv")
    served = replace(deps(CountingStore()), reports=store)

    def ask(path: str) -> DashboardRequest:
        return DashboardRequest("GET", path, {}, {}, READER_HEADER)

    html = await handle_dashboard(ask(f"runs/{run}/report.html"), served)
    assert html.status == 200 and b"<title>stale run</title>" in html.body
    assert "style-src 'unsafe-inline'" in html.headers["Content-Security-Policy"]
    assert "script" not in html.headers["Content-Security-Policy"]  # default-src 'none': no script at all
    csv = await handle_dashboard(ask(f"runs/{run}/report.csv"), served)
    assert (
        csv.status == 200
        and csv.content_type.startswith("text/csv")
        and "attachment" in csv.headers["Content-Disposition"]
    )
    for path in (
        f"runs/{run}/report.json",
        "runs/..%2F..%2Fsecrets/report.html",
        "runs/20991231T000000Z-ffffff/report.html",
    ):
        assert (await handle_dashboard(ask(path), served)).status == 404, path
    nobody = DashboardRequest("GET", f"runs/{run}/report.html", {}, {}, {})
    assert (await handle_dashboard(nobody, served)).status == 401  # a report is as protected as the pages
