"""Flows 2/3 end to end on the local world: the real function_app on the local host, the Graph simulator's sign-in
log, the local Service Bus broker, and two test ticket sinks (a signed webhook and a ServiceNow-shaped Table API)
served by aiohttp on 127.0.0.1.

Nothing here calls a service directly: the poller timer reads the simulator's sign-ins, the queue-triggered
processor mails the guest through the simulator and opens the ticket at the partner's sink.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import function_app
from local.graph_sim import GraphSimulator
from local.host import LocalFunctionsHost
from local.servicebus_broker import LocalServiceBusBroker, QueueOptions
from local.world import app_settings, free_port, with_roles
from shared.adapters.state.sqlite import SqliteStateStore
from shared.adapters.tickets import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from shared.bootstrap import AppServices
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.permissions import features_for, required_permissions
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())
NAMED: dict[str, str] = TENANT["named"]
RESOURCE_TENANT = TENANT["tenant"]["id"]
PARTNERS = {p["defaultDomainName"]: p["tenantId"] for p in TENANT["partnerTenants"]}
KEY = "e2e-function-key"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
SNOW_USER, SNOW_PASSWORD = "guestwarden-e2e", "snow-password-e2e"

pytestmark = pytest.mark.timeout(120)


@dataclass
class Sinks:
    """A partner's webhook receiver and a ServiceNow-shaped Table API, recording what they were sent."""

    webhook: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    servicenow: list[dict[str, Any]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/tickets", self._webhook)
        app.router.add_post("/api/now/table/incident", self._servicenow)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(
            WEBHOOK_SECRET.encode(),
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not ok:
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        self.webhook.append(json.loads(body))
        return web.json_response({"id": f"WH-{len(self.webhook)}"}, status=201)

    async def _servicenow(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{SNOW_USER}:{SNOW_PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": {"message": "User Not Authenticated"}}, status=401)
        record = await request.json()
        number = f"INC{10000 + len(self.servicenow) + 1:07d}"
        self.servicenow.append({**record, "number": number})
        return web.json_response({"result": {"number": number, "sys_id": uuid.uuid4().hex}}, status=201)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class World:
    sim: GraphSimulator
    broker: LocalServiceBusBroker
    host: LocalFunctionsHost
    sinks: Sinks
    state_path: Path

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.sim.outbox
            if address in {r["emailAddress"]["address"] for r in m["message"].get("toRecipients", [])}
        ]

    def queue_settled(self, queue: str) -> bool:
        """Every message sent to `queue` has been completed or dead-lettered (none waiting, locked, scheduled)."""
        counts, stats = self.broker.queue_counts(queue), self.broker.stats[queue]
        idle = counts["available"] == counts["locked"] == counts["scheduled"] == 0
        return idle and stats["sent"] == stats["completed"] + stats["dead_lettered"]

    async def audit(self, action: str) -> list[tuple[str, str]]:
        async with SqliteStateStore(self.state_path) as state:
            since = datetime.now(UTC) - timedelta(days=1)
            return [(e.subject, e.outcome) async for e in state.query(since, action=action)]


def sign_in(user_key: str, minutes_ago: float, code: int, reason: str, home: str) -> dict[str, Any]:
    user = TENANT_USERS[NAMED[user_key]]
    return {
        "id": str(uuid.uuid4()),
        "createdDateTime": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "userId": user["id"],
        "userPrincipalName": user["userPrincipalName"],
        "userDisplayName": user.get("displayName"),
        "appDisplayName": "Microsoft Teams",
        "ipAddress": "203.0.113.9",
        "correlationId": str(uuid.uuid4()),
        "conditionalAccessStatus": "notApplied",
        "isInteractive": True,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "resourceTenantId": RESOURCE_TENANT,
        "homeTenantId": home,
        "status": {"errorCode": code, "failureReason": reason, "additionalDetails": None},
        "appliedConditionalAccessPolicies": [],
    }


TENANT_USERS = {u["id"]: u for u in TENANT["users"]}
HOME_RISK = "User blocked due to risk on home tenant."


def partner_directory(path: Path, sinks: Sinks) -> Path:
    document = {
        "partners": [
            {
                "name": "Fabrikam",
                "tenantId": PARTNERS["fabrikam.com"],
                "sink": {"type": "webhook", "url": f"{sinks.url}/hooks/tickets", "secretSetting": "E2E_WEBHOOK_SECRET"},
            }
        ],
        "default": {
            "type": "servicenow",
            "instanceUrl": sinks.url,
            "usernameSetting": "E2E_SNOW_USER",
            "passwordSetting": "E2E_SNOW_PASSWORD",
        },
    }
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
async def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    """The risk flow runs with ONLY the roles shared/permissions.py declares for it (minus any role a test
    withholds through indirect parametrization)."""
    sinks = Sinks()
    await sinks.start()
    withheld = set(getattr(request, "param", ()))
    sim = GraphSimulator(with_roles(FIXTURE, required_permissions(features_for(["risk"])) - withheld)).start()
    broker = LocalServiceBusBroker(
        queues={
            GUEST_CHANGES_QUEUE: QueueOptions(max_delivery_count=3, lock_duration_s=10),
            RISK_INCIDENTS_QUEUE: QueueOptions(max_delivery_count=3, lock_duration_s=10),
        }
    ).start()
    port = free_port()
    state = tmp_path / "state.db"
    settings = app_settings(
        graph_url=sim.base_url,
        servicebus=broker.connection_string,
        host_port=port,
        state_path=state,
        function_key=KEY,
        client_state="e2e-client-state-0123456789abcdef",
        RISK_LOOKBACK_MINUTES="30",
        RISK_QUIET_MINUTES="60",
        RISK_PARTNER_DIRECTORY=str(partner_directory(tmp_path / "partners.json", sinks)),
        RISK_TICKET_ATTEMPTS="2",
        E2E_WEBHOOK_SECRET=WEBHOOK_SECRET,
        E2E_SNOW_USER=SNOW_USER,
        E2E_SNOW_PASSWORD=SNOW_PASSWORD,
    )
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    AppServices.reset()
    AppServices.use_clock(sim.clock.now)  # one clock for the world: the simulator's
    host = LocalFunctionsHost(function_app.build_app(), settings, port=port, clock=sim.clock)
    await host.start()
    yield World(sim, broker, host, sinks, state)
    await host.stop()
    broker.stop()
    sim.stop()
    await sinks.stop()
    await AppServices.close_current()
    AppServices.reset()


async def test_guest_blocked_twice_gets_one_notice_and_one_ticket_members_and_typos_nothing(world: World) -> None:
    fabrikam, adventure = PARTNERS["fabrikam.com"], PARTNERS["adventure-works.com"]
    world.sim.add_signin(sign_in("risk-53011", 14, 53011, HOME_RISK, fabrikam))
    world.sim.add_signin(sign_in("risk-53011", 3, 53011, HOME_RISK, fabrikam))  # same incident (quiet: 60 min)
    world.sim.add_signin(sign_in("risk-530032", 5, 530032, HOME_RISK, adventure))  # unknown partner: default sink
    world.sim.add_signin(sign_in("member-diego", 6, 53011, HOME_RISK, fabrikam))  # a member: never
    world.sim.add_signin(
        sign_in("wrong-password-50126", 4, 50126, "Invalid username or password.", PARTNERS["litwareinc.com"])
    )

    assert await world.host.fire_timer("risk_poller")
    assert await world.host.fire_timer("risk_poller")  # an overlapping poll: nothing new
    await eventually(lambda: len(world.sinks.webhook) == 1 and len(world.sinks.servicenow) == 1, what="the tickets")
    await eventually(lambda: len(world.sim.outbox) == 2, what="the notices")
    # a duplicate notice or ticket would come from a message still in the queue: wait until all are settled
    await eventually(lambda: world.queue_settled(RISK_INCIDENTS_QUEUE), what="the incident queue to settle")
    await world.host.idle()

    # the guest: one mail, to their own address, from the configured mailbox, with the self-service steps
    [notice] = world.mails_to("risk-53011@fabrikam.com")
    assert notice["sender"] == "guestwarden@contoso.onmicrosoft.com"
    assert notice["message"]["body"]["contentType"].lower() == "html"
    assert "passwordreset.microsoftonline.com" in notice["message"]["body"]["content"]
    assert "Fabrikam, Inc." in notice["message"]["body"]["content"]
    assert len(world.mails_to("risk-530032@adventure-works.com")) == 1
    assert world.mails_to("diego@contoso.com") == []
    assert world.mails_to("wrong-password-50126@litwareinc.com") == []

    # the home tenants: one signed webhook ticket (Fabrikam), one ServiceNow incident (default sink)
    assert world.sinks.bad_signatures == 0
    [ticket] = world.sinks.webhook
    assert ticket["homeTenantId"] == fabrikam and ticket["homeOrganisation"] == "Fabrikam, Inc."
    assert ticket["user"] == {"mail": "risk-53011@fabrikam.com"}
    assert ticket["signIn"]["errorCode"] == 53011
    assert "ipAddress" not in json.dumps(ticket)
    [incident] = world.sinks.servicenow
    assert incident["correlation_id"] and "risk-530032@adventure-works.com" in incident["short_description"]

    # the audit log: one incident per guest, each step once
    detected = await world.audit("risk-incident")
    assert sorted(subject for subject, _ in detected) == sorted([NAMED["risk-53011"], NAMED["risk-530032"]])
    assert sorted(await world.audit("risk-notify")) == sorted(
        [(NAMED["risk-53011"], "sent"), (NAMED["risk-530032"], "sent")]
    )
    assert sorted(await world.audit("risk-ticket")) == sorted(
        [(NAMED["risk-53011"], "opened"), (NAMED["risk-530032"], "opened")]
    )

    # the admin's view: `guestwarden blocked --json` reads the same audit log
    from typer.testing import CliRunner

    from cli.main import app as cli

    result = await asyncio.to_thread(CliRunner().invoke, cli, ["blocked", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["userId"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {NAMED["risk-53011"], NAMED["risk-530032"]}
    rita = rows[NAMED["risk-53011"]]
    assert (rita["notice"], rita["ticket"], rita["ticketId"], rita["state"]) == ("sent", "opened", "WH-1", "done")
    assert rita["homeOrganisation"] == "Fabrikam, Inc." and rita["errorCode"] == 53011
    assert rows[NAMED["risk-530032"]]["ticketId"] == "INC0010001"


@pytest.mark.parametrize("world", [("Directory.Read.All",), ("AuditLog.Read.All",)], indirect=True)
async def test_sign_ins_need_both_declared_roles_or_detection_fails_with_403(world: World) -> None:
    """docs/permissions.md: app-only sign-in logs need AuditLog.Read.All AND Directory.Read.All."""
    world.sim.add_signin(sign_in("risk-53011", 3, 53011, HOME_RISK, PARTNERS["fabrikam.com"]))
    await world.host.fire_timer("risk_poller")
    assert world.sim.denied["GET /auditLogs/signIns"] >= 1
    assert set(world.sim.denied) == {"GET /auditLogs/signIns"}
    # incidents are enqueued inside the poller's invocation, which has completed: none was
    assert world.broker.queue_depth(RISK_INCIDENTS_QUEUE) == 0
    assert world.sim.outbox == [] and world.sinks.webhook == [] and world.sinks.servicenow == []
