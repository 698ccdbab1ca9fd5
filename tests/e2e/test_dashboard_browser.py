"""The operator dashboard in a real browser (headless Debian Chromium through Selenium) against the local world
the demo runs: the real function_app on the local functions host, the Graph simulator on contoso.json, SQLite
state. One world and one browser for the module: the sweep warns, then (15 days later) disables, and the pages
are read and acted on as an operator would. Screenshots of each page go to $DASHBOARD_SCREENSHOTS (default: the
test's temporary folder).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from local.world import RunningWorld, running_world
from shared.bootstrap import build_graph_gateway, build_state_store, settings_from_env, stale_deps
from shared.domain.dashboard import OPERATOR, READER, client_principal_header
from shared.domain.stale import StageMemory
from shared.services.stale import StalePlan, sweep_stale_guests

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"
XSS = "<img src=x onerror=alert(1)>"
T = TypeVar("T")

pytestmark = pytest.mark.timeout(240)


def sweep_settings(folder: Path) -> dict[str, str]:
    """A sweep that acts (not a dry run), with sponsors' attestation links, its reports in `folder`."""
    return {
        "STALE_ATTEST_SIGNING_KEY": "e2e-attestation-signing-key-0123456789abcdef",
        "STALE_FALLBACK_REVIEWERS": "guest-reviews@contoso.com",
        "STALE_DRY_RUN": "false",
        "STALE_REPORT_DIR": str(folder / "reports"),
    }


class WorldThread:
    """The local world on its own event loop in a thread, so the (blocking) browser can talk to it."""

    def __init__(
        self, folder: Path, settings: Mapping[str, str] | None = None, functions: Iterable[str] | None = None
    ) -> None:
        """`settings`: app settings on top of the dashboard's (default: this module's sweep and attestation ones);
        `functions`: the ones the host runs (default: all)."""
        self.folder = folder
        self.settings = dict(settings if settings is not None else sweep_settings(folder))
        self.functions = functions
        self.world: RunningWorld | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        try:
            async with running_world(
                FIXTURE,
                self.folder,
                functions=self.functions,
                DASHBOARD_SIGNING_KEY="e2e-dashboard-signing-key-0123456789abcdef",
                DASHBOARD_DEV_SIGNIN=f"operator@contoso.com:{OPERATOR}",
                **self.settings,
            ) as world:
                self.world, self.loop, self._stop = world, asyncio.get_running_loop(), asyncio.Event()
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self) -> RunningWorld:
        self._thread.start()
        if not self._ready.wait(60) or self.world is None:
            raise AssertionError(f"the local world did not start: {self._error!r}")
        return self.world

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


async def _with_state(job: Any) -> Any:
    settings = settings_from_env(env=dict(os.environ))
    async with build_state_store(settings) as state:
        return await job(state)


@pytest.fixture(scope="module")
def world_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorldThread]:
    folder = tmp_path_factory.mktemp("dashboard-world")
    thread = WorldThread(folder)
    try:
        thread.start()
        yield thread
    finally:
        thread.stop()


def _sweep(thread: WorldThread, days: int) -> StalePlan:
    world = thread.world
    assert world is not None

    async def job() -> StalePlan:
        world.sim.clock.advance(timedelta(days=days))
        settings = settings_from_env(env=dict(os.environ))
        clock = world.sim.clock.now
        async with build_graph_gateway(settings) as graph, build_state_store(settings, clock) as state:
            base = stale_deps(settings, graph, state, clock)
            deps = replace(base, config=replace(base.config, max_actions=1000, max_percent=100))
            return await sweep_stale_guests(deps)

    return thread.run(job())


@pytest.fixture(scope="module")
def swept(world_thread: WorldThread) -> dict[str, Any]:
    """A warning sweep, then 15 days later one that disables: a run an operator may want to restore."""
    world = world_thread.world
    assert world is not None
    world_thread.run(world.host.fire_timer("subscription_keeper"))  # the notifications subscription: healthy
    world_thread.run(world.host.fire_timer("posture_checks"))  # nightly: reads subscribedSkus (the seats card)
    warned = _sweep(world_thread, 0)
    disabled = _sweep(world_thread, 15)
    assert warned.status == "applied" and disabled.status == "applied" and disabled.counts.get("disable", 0) > 0
    return {"warned": warned, "disabled": disabled}


def url(thread: WorldThread, page: str = "") -> str:
    assert thread.world is not None
    return f"{thread.world.host.http_url}/api/dashboard/{page}"


def _as(browser: Any, header: str | None) -> None:
    """Every later request of the browser carries this App Service principal (None: the development sign-in)."""
    browser.execute_cdp_cmd("Network.enable", {})
    headers = {"X-MS-CLIENT-PRINCIPAL": header} if header else {}
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def _text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def _status(address: str, header: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(address, headers={"X-MS-CLIENT-PRINCIPAL": header} if header else {})  # noqa: S310 (the local host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_the_overview_shows_the_numbers_in_guestwardens_state(
    world_thread: WorldThread, swept: dict[str, Any], browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _as(browser, None)
    browser.get(url(world_thread))
    stages: Counter[str] = Counter(
        str(StageMemory.from_json(r.value).stage)
        for r in world_thread.run(_with_state(lambda s: _records(s, "stale-stage")))
    )
    shown = {
        cell.get_attribute("data-stage"): int(cell.text)
        for cell in browser.find_elements(By.CSS_SELECTOR, "#stages td[data-stage]")
    }
    assert {k: v for k, v in shown.items() if v} == dict(stages)
    assert int(_text(browser, "#in-lifecycle")) == sum(stages.values())
    assert _text(browser, "#last-run") == swept["disabled"].run_id and _text(browser, "#last-run-status") == "applied"
    assert _text(browser, "#me") == "operator@contoso.com"
    # the guests as the last sweep read them: by invitation state, every guest of the tenant counted once
    world = world_thread.world
    assert world is not None
    tenant = [u for u in world.sim.users() if u.get("userType") == "Guest"]
    invitation = {
        cell.get_attribute("data-invitation"): int(cell.text)
        for cell in browser.find_elements(By.CSS_SELECTOR, "#invitation td[data-invitation]")
    }
    assert int(_text(browser, "#guests-total")) == len(tenant) == sum(invitation.values())
    pending = sum(1 for u in tenant if u.get("externalUserState") == "PendingAcceptance")
    assert invitation.get("pending", 0) == pending > 0
    # the seats as the posture checks read them, and the subscription the keeper made
    skus = {s["skuPartNumber"] for s in json.loads(FIXTURE.read_text())["subscribedSkus"]}
    seats = {cell.get_attribute("data-free") for cell in browser.find_elements(By.CSS_SELECTOR, "#seats td[data-free]")}
    assert seats == skus
    assert _text(browser, "#subscription") == "healthy"
    # both charts are drawn by the shipped uPlot under the strict CSP, with no violation reported
    for chart in ("#chart-actions canvas", "#chart-domains canvas"):
        WebDriverWait(browser, 10).until(_shown(chart))
    errors = [
        e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
    ]
    assert not errors, errors
    # the same numbers, readable without JavaScript: the nights' warnings and disables as the sweeps did them
    rows = browser.find_elements(By.CSS_SELECTOR, "#chart-actions-table tbody tr")
    cells = [[td.get_attribute("textContent") for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    shown_done = {"warn": sum(int(c[1]) for c in cells), "disable": sum(int(c[2]) for c in cells)}
    since = world.sim.clock.now() - timedelta(days=90)
    done = world_thread.run(_with_state(lambda s: _done(s, since)))
    assert shown_done == {"warn": done["stale-warn"], "disable": done["stale-disable"]} and done["stale-disable"]
    browser.save_screenshot(str(shots / "overview.png"))
    status, headers = _status(url(world_thread))
    csp = headers["Content-Security-Policy"]
    assert status == 200 and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    for page in ("guests", "runs", "risk"):
        browser.get(url(world_thread, page))
        browser.save_screenshot(str(shots / f"{page}.png"))
        assert "Not served" not in browser.page_source


def _shown(css: str) -> Any:
    from selenium.webdriver.common.by import By

    return lambda browser: browser.find_elements(By.CSS_SELECTOR, css)


async def _done(state: Any, since: Any) -> Counter[str]:
    """The sweep's actions done, per action, from the audit log."""
    return Counter([e.action async for e in state.query(since) if e.outcome == "done" and not e.dry_run])


async def _records(state: Any, kind: str) -> list[Any]:
    return [r async for r in state.list_records(kind)]


def test_a_guest_named_markup_is_shown_as_text(world_thread: WorldThread, swept: dict[str, Any], browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    world = world_thread.world
    assert world is not None
    guest = world.sim.named("stale-all")
    world.sim.update_user(guest, displayName=XSS)
    _as(browser, None)
    browser.get(url(world_thread, f"guests/{guest}"))
    assert _text(browser, "#guest-name") == XSS
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    browser.get(url(world_thread, f"guests?q={guest}"))
    assert XSS in _text(browser, "#guests")
    assert not browser.find_elements(By.CSS_SELECTOR, "#guests img")


def test_without_the_role_the_pages_answer_403(world_thread: WorldThread, browser: Any, shots: Path) -> None:
    nobody = client_principal_header("visitor@contoso.com", [])
    reader = client_principal_header("reader@contoso.com", [READER])
    for page in ("", "guests", "runs", "risk"):
        assert _status(url(world_thread, page), nobody)[0] == 403
        assert _status(url(world_thread, page), reader)[0] == 200
    # a reader sees the pages but cannot open an action's confirm page
    assert _status(url(world_thread, "confirm?action=restore-run&target=x"), reader)[0] == 403
    _as(browser, nobody)
    browser.get(url(world_thread))
    assert "does not have the app role" in _text(browser, "#refused")
    browser.save_screenshot(str(shots / "forbidden.png"))
    _as(browser, None)


def test_a_restore_through_the_page_restores_the_runs_guests(
    world_thread: WorldThread, swept: dict[str, Any], browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    world = world_thread.world
    assert world is not None
    run_id = swept["disabled"].run_id
    entries = world_thread.run(
        _with_state(lambda s: _entries(s, world.sim.clock.now() - timedelta(days=30), run_id, "stale-disable"))
    )
    disabled = sorted({e.subject for e in entries})
    assert disabled and all(world.sim.user(g)["accountEnabled"] is False for g in disabled)
    _as(browser, None)
    browser.get(url(world_thread, f"runs/{run_id}"))
    browser.save_screenshot(str(shots / "run.png"))
    # the run's report, from the report store, under a CSP that allows its style sheet and no script
    browser.find_element(By.ID, "report-html").click()
    WebDriverWait(browser, 10).until(lambda b: run_id in b.title)
    browser.save_screenshot(str(shots / "run-report.png"))
    status, headers = _status(url(world_thread, f"runs/{run_id}/report.html"))
    assert status == 200 and "script-src" not in headers["Content-Security-Policy"]
    browser.back()
    browser.find_element(By.ID, "restore").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "confirm"))
    assert all(world.sim.user(g)["accountEnabled"] is False for g in disabled)  # the confirm page changed nothing
    browser.save_screenshot(str(shots / "confirm.png"))
    browser.find_element(By.ID, "confirm").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "done"))
    page = browser.find_element(By.TAG_NAME, "body").text
    # a guest that was disabled before guestwarden acted stays disabled (the same rule as `guestwarden restore`)
    left = {g for g in disabled if f"{g} left-disabled" in page}
    enabled = {g for g in disabled if world.sim.user(g)["accountEnabled"] is True}
    assert enabled and enabled | left == set(disabled) and not enabled & left
    assert all(f"{g} re-enabled" in page for g in enabled)
    audit = world_thread.run(
        _with_state(lambda s: _entries(s, world.sim.clock.now() - timedelta(days=1), None, "stale-restore"))
    )
    assert {e.subject for e in audit} >= set(disabled)
    assert {e.actor for e in audit} == {"operator:operator@contoso.com"}


async def _entries(state: Any, since: Any, run_id: str | None, action: str) -> list[Any]:
    return [e async for e in state.query(since, action=action) if run_id is None or e.correlation_id == run_id]


def test_a_forged_post_changes_nothing(world_thread: WorldThread, swept: dict[str, Any]) -> None:
    world = world_thread.world
    assert world is not None
    body = f"action=restore-run&target={swept['warned'].run_id}&code=1.forged".encode()
    request = urllib.request.Request(  # noqa: S310 (the local host)
        url(world_thread, "act"),
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": world.host.http_url},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 403


def test_the_posture_page_shows_the_nightly_result_as_text(
    world_thread: WorldThread, swept: dict[str, Any], browser: Any, shots: Path
) -> None:
    from shared.domain.posture import Check, PostureReport, Status
    from shared.services.posture import save_posture

    world = world_thread.world
    assert world is not None
    _as(browser, None)
    browser.get(url(world_thread, "posture"))
    nightly = _text(browser, "#posture")  # the posture timer's run (the `swept` fixture)
    assert "Who can invite guests" in nightly and "Guest hygiene" in nightly
    evil = "<img src=x onerror=alert(1)>"
    finding = Check(
        "invites", "Who can invite guests", Status.FAIL, "guests invite guests", (f"holder: {evil}",), "restrict it"
    )
    report = PostureReport(world.sim.clock.now(), (finding,))
    world_thread.run(_with_state(lambda s: save_posture(s, report)))
    browser.get(url(world_thread, "posture"))
    browser.save_screenshot(str(shots / "posture.png"))
    table = _text(browser, "#posture")
    assert "Who can invite guests" in table and "fail" in table and f"holder: {evil}" in table  # shown as text
    assert "<img src=x" not in browser.page_source.replace("&lt;img src=x", "")
