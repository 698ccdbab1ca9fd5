"""`make demo`: guestwarden's flows on a simulated tenant, end to end, on one machine.

It starts the local world (the Graph simulator on local/fixtures/contoso.json, the Service Bus broker, the
embedded SQLite state and the local functions host running the same function_app that deploys to Azure),
then plays a scenario and CHECKS every expected outcome: the exit code is 0 only if all of them were seen.

    python -m local.demo [--keep-running] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from local.world import RunningWorld, eventually, free_port, running_world

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
FUNCTION_KEY = "demo-function-key"
CLIENT_STATE = "demo-client-state-0123456789abcdef"

console = Console()


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Scenario:
    checks: list[Check] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def step(self, text: str, style: str = "") -> None:
        # Text, not markup: names in a tenant are written by outsiders
        console.print(Text.assemble((f"{time.monotonic() - self.started:6.2f}s ", "dim"), (text, style)))

    def expect(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))
        mark = ("✔", "green") if ok else ("✘", "red")
        console.print(
            Text.assemble(
                (f"{time.monotonic() - self.started:6.2f}s ", "dim"),
                mark,
                " ",
                name,
                (f"  {detail}" if detail else "", "dim"),
            )
        )


DEMO_OPERATOR = "demo-operator@contoso.com"


def demo_settings(out: Path, inbox: TicketInbox) -> dict[str, str]:
    """What the demo sets on top of the local world's app settings (local/world.py): only settings differ from
    Azure. Writes the partner directory that routes Fabrikam's tickets to the demo's webhook."""
    partners = {
        "partners": [
            {
                "name": "Fabrikam",
                "domains": ["fabrikam.com"],
                "sink": {"type": "webhook", "url": inbox.url, "secretSetting": "DEMO_FABRIKAM_WEBHOOK_SECRET"},
            }
        ],
        "default": {"type": "email", "to": ["servicedesk@contoso.com"]},
    }
    (out / "partners.json").write_text(json.dumps(partners, indent=2))
    tenant = json.loads(FIXTURE.read_text())
    exclusions_group = tenant["hints"]["exclusionGroupId"]
    return {
        "USAGE_LOCATION_BY_DOMAIN": "adventure-works.com=DE,fabrikam.com=US",
        "LICENSE_EXCLUDED_DOMAINS": "woodgrovebank.com",
        "STALE_EXCLUDE_DOMAINS": "woodgrovebank.com",
        "STALE_EXCLUDE_GROUP_IDS": exclusions_group,
        # the group holding every guest, which the tenant's risk policy excludes (docs/posture.md)
        "POSTURE_GUEST_GROUP_ID": tenant["named"]["group-all-guests"],
        "RISK_PARTNER_DIRECTORY": str(out / "partners.json"),
        # sponsors' personal keep/remove links in the warning mails (a demo key; in Azure a Key Vault reference)
        "STALE_ATTEST_SIGNING_KEY": "demo-attestation-signing-key-0123456789abcdef",
        "STALE_FALLBACK_REVIEWERS": "guest-reviews@contoso.com",
        "DEMO_FABRIKAM_WEBHOOK_SECRET": inbox.secret,
        # the operator dashboard (a demo key; in Azure a Key Vault reference) and, locally only, a development
        # sign-in standing in for App Service Authentication (docs/dashboard.md)
        "DASHBOARD_SIGNING_KEY": "demo-dashboard-signing-key-0123456789abcdef",
        "DASHBOARD_DEV_SIGNIN": f"{DEMO_OPERATOR}:GuestWarden.Operator",
    }


async def licensing_scenario(world: Any, scenario: Scenario) -> None:
    sim, host = world.sim, world.host
    tenant = json.loads(FIXTURE.read_text())
    named, hints = tenant["named"], tenant["hints"]
    sku = hints["guestSkuId"]

    scenario.step("Flow 1: licence guests the moment they accept their invitation", "bold")
    await host.fire_timer("subscription_keeper")
    subs = [s for s in sim.subscriptions() if s["resource"].strip("/") == "users"]
    scenario.expect(
        "the /users subscription is created through the validation handshake",
        len(subs) == 1 and bool(sim.notifications.validations),
        f"id {subs[0]['id']}" if subs else "",
    )
    sim.notifications.configure(duplicates=1)
    guests = [named["pending-recent"], named["pending-old"]]
    for guest in guests:
        user = sim.user(guest)
        scenario.step(f"{user['displayName']} ({user['mail']}) redeems the invitation")
        sim.redeem_invitation(guest)

    def licensed_with(guest: str) -> Callable[[], bool]:
        return lambda: sku in {lic["skuId"] for lic in sim.user(guest).get("assignedLicenses", [])}

    for guest in guests:
        user = sim.user(guest)
        licensed = await eventually(licensed_with(guest))
        after = sim.user(guest)
        scenario.expect(
            f"{user['displayName']} licensed with usage location {after.get('usageLocation')}",
            licensed and bool(after.get("usageLocation")),
        )
    assigns = sum(n for key, n in sim.requests.items() if key.endswith("/assignLicense"))
    scenario.expect(
        "each licence assigned exactly once despite duplicate notifications",
        assigns == len(guests),
        f"{assigns} assignLicense call(s)",
    )


async def stale_scenario(world: Any, scenario: Scenario, out: Path) -> None:
    """Flow 4 as an operator drives it: the sweep service on the simulator's clock, dry run first.

    The timer runs the same service nightly; here the clock jumps forward weeks at a time, which only the
    simulator's clock can do, so the demo calls the service the timer calls with that clock.
    """
    from dataclasses import replace

    from local.graph_sim.clock import iso_z
    from shared.bootstrap import build_graph_gateway, build_state_store, settings_from_env, stale_deps
    from shared.services.posture import latest_posture
    from shared.services.stale import iter_items, restore_run, sweep_stale_guests

    sim = world.sim
    tenant = json.loads(FIXTURE.read_text())
    named = tenant["named"]
    scenario.step("Flow 4: the nightly stale-guest sweep (warn, disable, delete; restorable)", "bold")
    settings = settings_from_env(env={**os.environ, "STALE_REPORT_DIR": str(out / "reports")})
    # the app's own state store: `guestwarden audit` and `restore --run` see the sweep's runs afterwards; the
    # world's one clock (the simulator's), which the jumps below move
    clock = sim.clock.now
    async with build_graph_gateway(settings) as graph, build_state_store(settings, clock) as state:
        base = stale_deps(settings, graph, state, clock)
        deps = replace(base, config=replace(base.config, max_actions=1000, max_percent=100))

        def writes() -> int:
            verbs = ("PATCH ", "DELETE ", "BATCH PATCH ", "BATCH DELETE ", "POST /users/{id}/sendMail")
            return sum(n for key, n in sim.requests.items() if key.startswith(verbs))

        await world.host.fire_timer("posture_checks")  # nightly, before the sweep: read-only
        posture = await latest_posture(state)
        scenario.expect(
            "the nightly posture checks read the tenant's guest settings and kept the result",
            posture is not None and len(posture.checks) == 6,
            ", ".join(f"{n} {s}" for s, n in posture.counts().items() if n) if posture else "nothing saved",
        )
        writes_before, mails_before = writes(), len(sim.outbox)
        plan = await sweep_stale_guests(deps)  # STALE_DRY_RUN defaults to true: a plan, no action
        html = next((Path(r) for r in plan.reports if r.endswith(".html")), None)
        scenario.expect(
            "the sweep's report shows the posture section",
            html is not None and "<h2>Guest posture</h2>" in html.read_text(),
            str(html),
        )
        scenario.expect(
            f"dry run plans {plan.counts.get('warn', 0)} warnings and touches nobody",
            plan.dry_run
            and plan.counts.get("warn", 0) > 0
            and writes() == writes_before
            and len(sim.outbox) == mails_before,
            f"{plan.guests_seen} guests seen, report {plan.reports[0] if plan.reports else '-'}",
        )
        mails_before = len(sim.outbox)
        warned = await sweep_stale_guests(deps, dry_run=False)
        scenario.expect(
            f"real run warns {warned.counts.get('warn', 0)} stale guests and mails their sponsors",
            warned.status == "applied" and len(sim.outbox) > mails_before,
            f"{len(sim.outbox) - mails_before} mail(s)",
        )
        resent = [i for i in sim.invitations if i["messageSent"]]
        scenario.expect(
            f"{len(resent)} never-redeemed invitation(s) re-sent with their warnings, before any purge",
            bool(resent) and len({i["invitedUserId"] for i in resent}) == len(resent),
            "POST /invitations, once per guest",
        )
        kept = await sponsor_keeps(sim, scenario, named["sponsored-stale"], "adele@contoso.com")
        sim.clock.advance(timedelta(days=settings.stale.warn_grace_days + 1))
        scenario.step(f"the clock jumps {settings.stale.warn_grace_days + 1} days")
        disabled = await sweep_stale_guests(deps, dry_run=False)
        disabled_ids = [i.user_id async for i in iter_items(deps.reports, disabled) if str(i.action) == "disable"]
        scenario.expect(
            f"{len(disabled_ids)} guests disabled after the warning period",
            bool(disabled_ids) and all(sim.user(u)["accountEnabled"] is False for u in disabled_ids),
        )
        scenario.expect(
            "the re-invited guests who still did not accept are disabled, and invited no second time",
            {i["invitedUserId"] for i in resent} <= set(disabled_ids) and len(sim.invitations) == len(resent),
        )
        scenario.expect(
            f"the guest its sponsor kept is not disabled (kept until {kept})",
            named["sponsored-stale"] not in disabled_ids and sim.user(named["sponsored-stale"])["accountEnabled"],
        )
        lars = named["stale-licensed"]
        guest_sku = tenant["hints"]["guestSkuId"].lower()

        def holds_licence(user: str) -> bool:
            return guest_sku in {str(e["skuId"]).lower() for e in sim.user(user).get("assignedLicenses") or []}

        scenario.expect(
            f"{sim.user(lars)['displayName']}'s licence is taken back with the disable (the seat is free again)",
            lars in disabled_ids and not holds_licence(lars),
            f"{disabled.licences_to_reclaim} licence(s) taken back",
        )
        comeback = disabled_ids[0]
        sim.update_user(comeback, signInActivity={"lastNonInteractiveSignInDateTime": iso_z(sim.clock.now())})
        scenario.step(f"{sim.user(comeback)['displayName']} signs in again during the grace period")
        sim.clock.advance(timedelta(days=settings.stale.delete_grace_days + 1))
        scenario.step(f"the clock jumps {settings.stale.delete_grace_days + 1} days")
        deleted = await sweep_stale_guests(deps, dry_run=False)
        deleted_ids = [i.user_id async for i in iter_items(deps.reports, deleted) if str(i.action) == "delete"]
        scenario.expect(
            "the guest who came back is re-enabled, not deleted",
            sim.user(comeback)["accountEnabled"] is True and comeback not in deleted_ids,
        )
        scenario.expect(f"{len(deleted_ids)} guests soft-deleted after the grace period", bool(deleted_ids))
        untouched = [named["member-ext"], named["excluded-by-domain"], named["excluded-by-group"]]
        scenario.expect(
            "members (even with #EXT#) and excluded guests are never touched",
            all(sim.user(u)["accountEnabled"] is True for u in untouched),
        )
        restored = await restore_run(deleted.run_id, deps)
        scenario.expect(
            f"restore --run {deleted.run_id} brings the {len(deleted_ids)} deleted guests back",
            {r.user_id for r in restored} >= set(deleted_ids)
            and all(not sim.user(u).get("deletedDateTime") for u in deleted_ids),
            f"{len(restored)} guest(s) restored or re-enabled",
        )
        scenario.expect(f"{sim.user(lars)['displayName']} gets the licence back with the restore", holds_licence(lars))
    sim.clock.reset()
    scenario.step("the clock returns to today; Graph dropped the /users subscription while it was weeks ahead")
    await world.host.fire_timer("subscription_keeper")
    live = [s for s in sim.subscriptions() if s["resource"].strip("/") == "users"]
    scenario.expect("the subscription keeper recreates it through the handshake", len(live) == 1)


async def dashboard_scenario(world: Any, scenario: Scenario) -> None:
    """The operator dashboard shows what the sweeps left, from guestwarden's own aggregates."""
    from local.sponsor import open_link
    from shared.bootstrap import build_state_store, settings_from_env
    from shared.services.census import load_census, load_tally

    url = f"{world.host.http_url}/api/dashboard/"
    scenario.step(f"the operator dashboard: {url} (signed in locally as {DEMO_OPERATOR})", "bold")
    settings = settings_from_env(env=dict(os.environ))
    async with build_state_store(settings) as state:
        tally, census = await load_tally(state), await load_census(state)
    page = await open_link(url)
    lifecycle = sum(tally.counts().values()) if tally else -1
    shown = re.search(r'id="in-lifecycle">(\d+)<', page.html)
    scenario.expect(
        "the dashboard's overview shows the guests in the lifecycle and the last sweep, from the aggregates",
        page.status == 200
        and shown is not None
        and int(shown.group(1)) == lifecycle
        and census is not None
        and census.last_run is not None
        and census.last_run.run_id in page.html,
        f"HTTP {page.status}, {lifecycle} guest(s) in the lifecycle",
    )


async def sponsor_keeps(sim: Any, scenario: Scenario, guest: str, sponsor_mail: str) -> str:
    """The sponsor opens the link in its warning mail (a page; nothing changes) and presses "keep"."""
    from local.sponsor import attestation_links, open_link, press, recipients

    name = sim.user(guest)["displayName"]
    mails = [
        m
        for m in sim.outbox
        if recipients(m) == [sponsor_mail] and name in m["message"]["subject"] and attestation_links(m)
    ]
    scenario.step(f"{sponsor_mail} opens the link in the warning about {name} and presses Keep")
    if not mails:
        scenario.expect(f"{sponsor_mail} got a personal attestation link about {name}", False)
        return "-"
    url = attestation_links(mails[-1])[0]
    before = sim.user(guest)
    page = await open_link(url)
    scenario.expect(
        "opening the link shows a confirmation page and changes nothing (mail scanners open links too)",
        page.status == 200 and 'value="keep"' in page.html and sim.user(guest) == before,
        f"HTTP {page.status}, CSP {page.headers.get('Content-Security-Policy', '-')[:24]}...",
    )
    answer = await press(url, page, "keep")
    until = re.search(r"kept until (\d{4}-\d{2}-\d{2})", answer.html)
    scenario.expect(f"the sponsor keeps {name}", answer.status == 200 and until is not None, f"HTTP {answer.status}")
    return until.group(1) if until else "-"


class TicketInbox:
    """A partner's ticket webhook on 127.0.0.1: checks the HMAC signature and keeps what it received."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.tickets: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.url = ""
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        from shared.adapters.tickets import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        async def receive(request: web.Request) -> web.Response:
            body = await request.read()
            headers = request.headers
            if not verify(
                self.secret.encode(), headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, "")
            ):
                self.bad_signatures += 1
                return web.Response(status=401)
            self.tickets.append(json.loads(body))
            return web.json_response({"ticket": f"FAB-{len(self.tickets):04d}"}, status=201)

        app = web.Application()
        app.router.add_post("/tickets", receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/tickets"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def risky_sign_in(
    user: dict[str, Any], tenant_id: str, home: str, at: datetime, minutes_ago: float, code: int
) -> dict[str, Any]:
    import uuid

    reason = "User blocked due to risk on home tenant." if code == 53011 else "Error validating credentials."
    return {
        "id": str(uuid.uuid4()),
        "createdDateTime": (at - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "userId": user["id"],
        "userPrincipalName": user["userPrincipalName"],
        "appDisplayName": "Microsoft Teams",
        "correlationId": str(uuid.uuid4()),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": True,
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "resourceTenantId": tenant_id,
        "homeTenantId": home,
        "status": {"errorCode": code, "failureReason": reason, "additionalDetails": None},
        "appliedConditionalAccessPolicies": [],
    }


async def risk_scenario(world: Any, scenario: Scenario, inbox: TicketInbox) -> None:
    sim, host = world.sim, world.host
    tenant = json.loads(FIXTURE.read_text())
    named = tenant["named"]
    users = {u["id"]: u for u in tenant["users"]}
    fabrikam = next(p["tenantId"] for p in tenant["partnerTenants"] if p["defaultDomainName"] == "fabrikam.com")
    scenario.step(
        "Flows 2 and 3: a guest blocked by risk at home is told, and the home organisation gets a ticket", "bold"
    )
    guest = users[named["risk-53011"]]
    member = users[named["member-diego"]]
    typo = users[named["wrong-password-50126"]]
    mails_before = len(sim.outbox)
    now = sim.clock.now()
    for minutes_ago in (9, 4):
        sim.add_signin(risky_sign_in(guest, tenant["tenant"]["id"], fabrikam, now, minutes_ago, 53011))
    sim.add_signin(risky_sign_in(member, tenant["tenant"]["id"], fabrikam, now, 6, 53011))
    sim.add_signin(risky_sign_in(typo, tenant["tenant"]["id"], fabrikam, now, 5, 50126))
    scenario.step(f"{guest['displayName']} is blocked twice (53011); a member and a wrong password too")
    await host.fire_timer("risk_poller")
    await host.fire_timer("risk_poller")  # overlapping windows: nothing twice
    got_ticket = await eventually(lambda: len(inbox.tickets) >= 1)
    got_mail = await eventually(lambda: len(sim.outbox) > mails_before)
    await asyncio.sleep(0.5)
    notices = [m for m in sim.outbox[mails_before:] if guest["mail"] in json.dumps(m["message"].get("toRecipients"))]
    scenario.expect(
        f"one notice mailed to {guest['mail']} explaining how to remediate at home",
        got_mail and len(notices) == 1,
        notices[0]["message"].get("subject", "") if notices else "",
    )
    scenario.expect(
        "one ticket received by Fabrikam's webhook, signature verified",
        got_ticket and len(inbox.tickets) == 1 and inbox.bad_signatures == 0,
    )
    others = [m for m in sim.outbox[mails_before:] if m not in notices]
    scenario.expect("the member and the wrong password got nothing", not others)


def write_env_file(world: Any, out: Path) -> Path:
    """The demo's app settings as KEY='value' lines, so the CLI in another shell talks to the same local world.

    Local, throwaway values only (the demo's function key and clientState are constants in this file).
    """
    path = out / "demo.env"
    lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(world.settings.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(scenario: Scenario) -> Table:
    table = Table(title="guestwarden demo: expected outcomes")
    table.add_column("outcome")
    table.add_column("seen", justify="center")
    for check in scenario.checks:
        table.add_row(Text(check.name), Text("yes" if check.ok else "NO", style="green" if check.ok else "bold red"))
    return table


async def run(out: Path, keep_running: bool) -> int:
    scenario = Scenario()
    scenario.step("starting the local world: Graph simulator, Service Bus broker, functions host")
    inbox = TicketInbox("demo-fabrikam-webhook-secret-0123456789")
    await inbox.start()
    try:
        async with running_world(
            FIXTURE, out, function_key=FUNCTION_KEY, client_state=CLIENT_STATE, **demo_settings(out, inbox)
        ) as world:
            await play(world, scenario, inbox, out, keep_running)
    finally:
        await inbox.stop()
    failed = [c for c in scenario.checks if not c.ok]
    if failed:
        console.print(f"[bold red]{len(failed)} expected outcome(s) not seen[/bold red]")
        return 1
    console.print(f"[bold green]all {len(scenario.checks)} expected outcomes seen[/bold green]")
    return 0


async def play(world: RunningWorld, scenario: Scenario, inbox: TicketInbox, out: Path, keep_running: bool) -> None:
    scenario.step(
        f"Graph simulator {world.sim.base_url} (its clock, the app's: {world.sim.clock.now():%Y-%m-%d %H:%M:%S} "
        f"UTC); functions host {world.host.http_url}"
    )
    await licensing_scenario(world, scenario)
    await risk_scenario(world, scenario, inbox)
    await stale_scenario(world, scenario, out)
    await dashboard_scenario(world, scenario)
    (out / "tickets.json").write_text(json.dumps(inbox.tickets, indent=2))
    (out / "mails.json").write_text(json.dumps(world.sim.outbox, indent=2, default=str))
    console.print(summary(scenario))
    console.print(f"outputs in [bold]{out}[/bold]")
    console.print(
        f"the operator dashboard: [bold]{world.host.http_url}/api/dashboard/[/bold] (stays up with --keep-running)"
    )
    if keep_running:
        env_file = write_env_file(world, out)
        console.print("[bold]--keep-running[/bold]: the local world stays up; Ctrl-C to stop. In another shell:")
        console.print(f"  set -a; . {env_file}; set +a   # the app settings, for the CLI")
        console.print(f"  the dashboard: {world.host.http_url}/api/dashboard/   (signed in as {DEMO_OPERATOR})")
        for command in ("guests", "audit --days 1", "blocked", "subscriptions status", "deadletters list"):
            console.print(f"  .venv/bin/guestwarden {command}")
        console.print(
            f"  curl -s -X POST 'http://127.0.0.1:{world.host.port}/api/graph/notifications"
            f"?code={FUNCTION_KEY}&validationToken=hello'   # the handshake Graph does"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-running", action="store_true", help="leave the local world up for exploring")
    parser.add_argument("--out", type=Path, default=ROOT / "demo-output", help="folder for mails, reports, state")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    return asyncio.run(run(args.out, args.keep_running))


if __name__ == "__main__":
    sys.exit(main())
