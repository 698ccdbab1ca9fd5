"""Sponsor attestation end to end, through its public surface: the sweep (msgraph-sdk against the Graph
simulator) mails each sponsor a personal link -> the sponsor opens it on the local functions host (GET: a page,
no change) -> presses a button (POST: keep or remove) -> the directory and the next sweep follow. Hostile links
get a 4xx page, change nothing and leave an audit line. `guestwarden attest link` prints the same link.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from local.sponsor import Page, attestation_links, open_link, press, recipients
from local.world import RunningWorld, running_world
from shared.bootstrap import build_graph_gateway, build_state_store, settings_from_env, stale_deps
from shared.services.stale import StaleDeps, restore_guest, sweep_stale_guests
from tests.e2e.cli import guestwarden

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"
KEY = "e2e-attestation-signing-key-0123456789abcdef"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[RunningWorld]:
    async with running_world(
        FIXTURE,
        tmp_path,
        functions=["attest"],
        STALE_ATTEST_SIGNING_KEY=KEY,
        STALE_DRY_RUN="false",
        STALE_REPORT_DIR=str(tmp_path / "reports"),
        STALE_FALLBACK_REVIEWERS="guest-reviews@contoso.com",
    ) as running:
        yield running


async def sweep(world: RunningWorld, days: int = 0) -> Any:
    """One real sweep after `days` on the world's clock, with the app's settings and state."""
    world.sim.clock.advance(timedelta(days=days))
    settings = settings_from_env(env=dict(os.environ))
    clock = world.sim.clock.now
    async with build_graph_gateway(settings) as graph, build_state_store(settings, clock) as state:
        base = stale_deps(settings, graph, state, clock)
        deps = replace(base, config=replace(base.config, max_actions=1000, max_percent=100))
        return await sweep_stale_guests(deps)


async def with_deps(world: RunningWorld, job: Any) -> Any:
    settings = settings_from_env(env=dict(os.environ))
    clock = world.sim.clock.now
    async with build_graph_gateway(settings) as graph, build_state_store(settings, clock) as state:
        deps: StaleDeps = stale_deps(settings, graph, state, clock)
        return await job(deps)


def writes(world: RunningWorld) -> int:
    verbs = ("PATCH ", "DELETE ", "BATCH PATCH ", "BATCH DELETE ", "BATCH POST ", "POST /users/{id}/sendMail")
    return sum(n for key, n in world.sim.requests.items() if key.startswith(verbs))


def link_for(world: RunningWorld, guest: str, to: str) -> str:
    name = world.sim.user(guest)["displayName"]
    [mail] = [m for m in world.sim.outbox if recipients(m) == [to] and name in m["message"]["subject"]]
    [url] = attestation_links(mail)
    assert url.startswith(world.host.http_url + "/api/attest?t=")
    return url


async def audit_of(world: RunningWorld, guest: str) -> list[tuple[str, str, str]]:
    async def job(deps: StaleDeps) -> list[tuple[str, str, str]]:
        since = world.sim.clock.now() - timedelta(days=400)
        return [
            (e.actor, e.outcome, e.reason)
            async for e in deps.state.query(since)
            if e.action == "stale-attest" and e.subject == guest
        ]

    result: list[tuple[str, str, str]] = await with_deps(world, job)
    return result


async def test_a_sponsor_keeps_a_guest_through_the_link_and_the_next_sweep_leaves_it_alone(
    world: RunningWorld,
) -> None:
    sim = world.sim
    sara = sim.named("sponsored-stale")  # sponsors: Adele and Alex, each mailed their own link
    await sweep(world)
    adele_link, alex_link = link_for(world, sara, "adele@contoso.com"), link_for(world, sara, "alex@contoso.com")
    assert adele_link != alex_link

    writes_before, sara_before = writes(world), sim.user(sara)
    pages = [await open_link(adele_link) for _ in range(3)]  # scanners, then the sponsor: nothing changes
    assert {p.status for p in pages} == {200}
    assert writes(world) == writes_before and sim.user(sara) == sara_before
    assert await audit_of(world, sara) == []
    page = pages[-1]
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Content-Type"].startswith("text/html")

    kept = await press(adele_link, page, "keep")
    assert kept.status == 200 and "kept until" in kept.html
    late = await open_link(alex_link)  # the second sponsor is too late: the page says so, with no buttons
    assert late.status == 409 and "already answered" in late.html and 'value="remove"' not in late.html
    replay = await press(adele_link, page, "remove")  # the first page's form posted again
    assert replay.status == 409 and sim.user(sara)["accountEnabled"] is True

    plan = await sweep(world, days=15)  # past the warning grace: the others are disabled, Sara is not
    assert plan.status == "applied" and sim.user(sara)["accountEnabled"] is True
    assert sim.user(sim.named("stale-all"))["accountEnabled"] is False
    entries = await audit_of(world, sara)
    adele = f"sponsor:{sim.named('sponsor-adele')}"
    assert (adele, "keep", "keep") in entries and (adele, "refused", "replayed") in entries


async def test_remove_now_disables_at_once_and_stays_restorable(world: RunningWorld) -> None:
    sim = world.sim
    sven = sim.named("stale-all")  # no sponsor: the fallback reviewers get the link
    await sweep(world)
    url = link_for(world, sven, "guest-reviews@contoso.com")
    removed = await press(url, await open_link(url), "remove")
    assert removed.status == 200 and sim.user(sven)["accountEnabled"] is False
    outcome = await with_deps(world, lambda deps: restore_guest(sven, deps))
    assert outcome.status == "re-enabled" and sim.user(sven)["accountEnabled"] is True
    assert ("reviewer:guest-reviews@contoso.com", "remove", "remove") in await audit_of(world, sven)


def _retoken(url: str, token: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode({'t': token})}"


async def test_hostile_links_get_a_4xx_page_change_nothing_and_are_audited(world: RunningWorld) -> None:
    sim = world.sim
    sara, sven = sim.named("sponsored-stale"), sim.named("stale-all")
    await sweep(world)
    url = link_for(world, sara, "adele@contoso.com")
    token = parse_qs(urlsplit(url).query)["t"][0]
    version, payload, signature = token.split(".")
    other = parse_qs(urlsplit(link_for(world, sven, "guest-reviews@contoso.com")).query)["t"][0]

    tampered = _retoken(url, f"{version}.{payload}.{signature[::-1]}")
    assert (await open_link(tampered)).status == 403
    spliced = _retoken(url, f"{version}.{other.split('.')[1]}.{signature}")  # Sven's payload, Sara's signature
    page = await open_link(spliced)
    assert page.status == 403 and "Nothing was changed" in page.html

    good = await open_link(url)
    assert (
        await press(url, Page(good.status, good.html.replace('name="confirm"', 'name="x"'), {}), "remove")
    ).status == 403
    assert (await press(url, good, "remove", origin="https://evil.example")).status == 403
    assert sim.user(sara)["accountEnabled"] is True and sim.user(sven)["accountEnabled"] is True

    sim.update_user(sara, displayName="<img src=x onerror=alert(1)>")
    shown = await open_link(url)
    assert "<img src=x" not in shown.html and "&lt;img src=x onerror=alert(1)&gt;" in shown.html

    sim.clock.advance(timedelta(days=45))  # past the link's expiry (warning + disabled grace)
    expired = await open_link(url)
    assert expired.status == 410 and "expired" in expired.html
    reasons = sorted(reason for _, outcome, reason in await audit_of(world, sara) if outcome == "refused")
    assert reasons == ["cross-site", "expired", "no-confirmation"]
    # the tampered and the spliced token prove nothing about whom they name: audited under "unknown"
    assert [o for _, o, r in await audit_of(world, "unknown") if r == "forged"] == ["refused", "refused"]


async def test_the_cli_prints_the_link_a_sponsor_gets(world: RunningWorld, tmp_path: Path) -> None:
    sim = world.sim
    sara = sim.named("sponsored-stale")
    await sweep(world)
    env = {**os.environ}
    done = guestwarden("attest", "link", "--user", sara, "--sponsor", sim.named("sponsor-alex"), env=env)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(world.host.http_url + "/api/attest?t=")
    assert (await open_link(url)).status == 200
    refused = guestwarden("attest", "link", "--user", sara, "--sponsor", sim.named("member-lynne"), env=env)
    assert refused.returncode == 2 and "not a sponsor" in refused.stderr
    never = guestwarden("attest", "link", "--user", sim.named("member-lynne"), "--sponsor", "x@contoso.com", env=env)
    assert never.returncode == 2 and "not in a review" in never.stderr
