"""respond_to_incident on fakes: the guest notice and the home-tenant ticket, each once, safely."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.adapters.graph import GraphError
from shared.adapters.templates import RiskTemplates
from shared.adapters.tickets import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Partner,
    PartnerDirectoryError,
    SinkConfig,
    WebhookSink,
    load_partner_directory,
    verify,
)
from shared.domain.directory import OutgoingMail, TenantInformation
from shared.domain.messages import MalformedMessage, RiskIncident, parse_message
from shared.domain.risk import Ticket
from shared.ports.tickets import TicketSink, TicketSinkError
from shared.services.census import tickets_opened
from shared.services.risk_detection import incident_message
from shared.services.risk_response import (
    NOTIFY,
    SENDING,
    TICKET,
    ResponseDeps,
    TicketNotDelivered,
    respond_to_incident,
)
from tests.fakes.state import MemoryStateStore
from tests.unit.risk_fakes import FABRIKAM, NOW, FakeRiskGraph, MovingClock, blocked, guest, member

FABRIKAM_INFO = TenantInformation(FABRIKAM, "Fabrikam, Inc.", "fabrikam.com", "Fabrikam")


class RecordingSink(TicketSink):
    kind = "webhook"

    def __init__(self, failures: int = 0) -> None:
        self.tickets: list[Ticket] = []
        self.failures = failures
        self.calls = 0

    async def open(self, ticket: Ticket) -> str:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise TicketSinkError("sink down")
        self.tickets.append(ticket)
        return f"T-{len(self.tickets)}"


class OneSink:
    def __init__(self, sink: TicketSink) -> None:
        self.sink = sink
        self.asked: list[tuple[str | None, str | None]] = []

    def resolve(self, tenant_id: str | None, domain: str | None) -> tuple[Partner, TicketSink]:
        self.asked.append((tenant_id, domain))
        return Partner.model_construct(name="Fabrikam", sink=SinkConfig.model_construct(kind="webhook")), self.sink


async def no_sleep(_: float) -> None:
    return None


def wire_body(user_id: str = "g1") -> dict[str, Any]:
    """The incident message as the detector puts it on the queue (decoded JSON, envelope included)."""
    from shared.domain.risk import Cause, Incident, RiskBlock

    first = RiskBlock(blocked("s1", NOW - timedelta(minutes=3), user_id=user_id), Cause.HOME_TENANT_RISK)
    incident = Incident("inc1", user_id, first.sign_in.created, first.sign_in.created, 1, first)
    return json.loads(incident_message(incident).encoded_body())


def payload(user_id: str = "g1") -> RiskIncident:
    """The typed message the dispatcher hands the responder, parsed from the wire body."""
    message = parse_message(wire_body(user_id))
    assert isinstance(message, RiskIncident)
    return message


def make(graph: FakeRiskGraph, sink: TicketSink | None = None, **kw: Any) -> tuple[ResponseDeps, OneSink | None]:
    sinks = OneSink(sink) if sink else None
    deps = ResponseDeps(
        graph=graph,
        state=MemoryStateStore(clock=graph.clock),
        templates=RiskTemplates(kw.pop("template_dir", None)),
        sinks=sinks,
        sender="guestwarden@contoso.com",
        organisation="Contoso",
        support_contact="helpdesk@contoso.com",
        notice_format=kw.pop("notice_format", "html"),
        clock=graph.clock,
        ticket_attempts=3,
        sleep=no_sleep,
    )
    return deps, sinks


def world(*users: Any) -> FakeRiskGraph:
    return FakeRiskGraph(MovingClock(), users or [guest()], [FABRIKAM_INFO])


async def audit(deps: ResponseDeps) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) async for e in deps.state.query(NOW - timedelta(days=1))]


async def test_guest_gets_one_notice_and_the_home_tenant_one_ticket() -> None:
    graph, sink = world(), RecordingSink()
    deps, sinks = make(graph, sink)

    outcome = await respond_to_incident(payload(), deps)
    again = await respond_to_incident(payload(), deps)  # a redelivered message

    assert (outcome.notice, outcome.ticket) == ("sent", "opened")
    assert (again.notice, again.ticket) == ("already-done", "already-done")
    [mail] = graph.outbox
    assert mail.to == ("g1@fabrikam.com",)
    assert mail.sender == "guestwarden@contoso.com"
    assert mail.body_type == "HTML"
    assert "passwordreset.microsoftonline.com" in mail.body
    assert "Fabrikam, Inc." in mail.body and "helpdesk@contoso.com" in mail.body
    assert "Contoso" in mail.subject
    [ticket] = sink.tickets
    assert ticket.guest_mail == "g1@fabrikam.com"
    assert (ticket.home_tenant_id, ticket.home_organisation, ticket.error_code) == (FABRIKAM, "Fabrikam, Inc.", 53011)
    assert ticket.correlation_id == "corr-s1"
    assert any("Risky users" in step for step in ticket.remediation)
    assert sinks is not None and sinks.asked == [(FABRIKAM, "fabrikam.com")]
    assert await audit(deps) == [(NOTIFY, "sent"), (TICKET, "opened")]


async def test_the_ticket_carries_nothing_about_our_logs() -> None:
    graph, sink = world(), RecordingSink()
    deps, _ = make(graph, sink)
    await respond_to_incident(payload(), deps)
    document = json.dumps(sink.tickets[0].to_json())
    for leak in ("203.0.113", "ipAddress", "location", "device", "Microsoft Teams", "#EXT#", "Rita"):
        assert leak not in document


async def test_a_member_is_never_mailed_nor_ticketed() -> None:
    graph, sink = world(member("g1")), RecordingSink()
    deps, _ = make(graph, sink)
    outcome = await respond_to_incident(payload(), deps)
    assert (outcome.notice, outcome.ticket) == ("skipped", "skipped")
    assert graph.outbox == [] and sink.tickets == []


async def test_other_mails_are_used_when_mail_is_empty_and_nothing_else() -> None:
    user = guest(mail=None, other_mails=("Rita@Fabrikam.com", "rita@fabrikam.com", "not an address"))
    graph = world(user)
    deps, _ = make(graph)
    await respond_to_incident(payload(), deps)
    assert graph.outbox[0].to == ("Rita@Fabrikam.com",)


async def test_attacker_controlled_names_are_escaped_and_cannot_inject_headers() -> None:
    evil = guest(display_name='<script>alert(1)</script><a href="https://evil.example">x</a>')
    graph = world(evil)
    evil_tenant = TenantInformation(FABRIKAM, "Evil\r\nBcc: victim@example.com <b>", "fabrikam.com")
    graph.tenants = {FABRIKAM: evil_tenant}
    deps, _ = make(graph)
    await respond_to_incident(payload(), deps)
    [mail] = graph.outbox
    assert "<script>" not in mail.body and "&lt;script&gt;" in mail.body
    assert 'href="https://evil.example"' not in mail.body
    assert "\r" not in mail.subject and "\n" not in mail.subject


async def test_plain_text_notice_by_setting() -> None:
    graph = world()
    deps, _ = make(graph, notice_format="text")
    await respond_to_incident(payload(), deps)
    [mail] = graph.outbox
    assert mail.body_type == "Text" and "<p>" not in mail.body and "passwordreset" in mail.body


async def test_templates_can_be_overridden_one_file_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "subject.txt").write_text("Action needed at {{ home_organisation }}")
    graph = world()
    deps, _ = make(graph, template_dir=tmp_path)
    await respond_to_incident(payload(), deps)
    [mail] = graph.outbox
    assert mail.subject == "Action needed at Fabrikam, Inc."
    assert "passwordreset" in mail.body  # the built-in notice.html still serves


async def test_a_refused_mail_is_retried_with_the_next_delivery() -> None:
    graph = world()
    graph.mail_failures = [GraphError(403, "ErrorAccessDenied", "Access is denied.")]
    deps, _ = make(graph)
    with pytest.raises(GraphError):
        await respond_to_incident(payload(), deps)
    outcome = await respond_to_incident(payload(), deps)
    assert outcome.notice == "sent"
    assert len(graph.outbox) == 1


async def test_an_unknown_mail_outcome_is_not_retried_blindly() -> None:
    graph = world()
    graph.mail_failures = [GraphError(None, "timeout", "timed out")]
    deps, _ = make(graph)
    first = await respond_to_incident(payload(), deps)
    second = await respond_to_incident(payload(), deps)
    assert (first.notice, second.notice) == ("uncertain", "already-done")
    assert graph.outbox == []


class KilledWhileSending(FakeRiskGraph):
    """Graph accepts the mail, then the worker dies before it hears back (the task is cancelled)."""

    async def send_mail(self, mail: OutgoingMail) -> None:
        await super().send_mail(mail)
        if len(self.outbox) == 1:
            raise asyncio.CancelledError


async def test_a_worker_killed_mid_send_never_mails_twice() -> None:
    graph = KilledWhileSending(MovingClock(), [guest()], [FABRIKAM_INFO])
    deps, _ = make(graph)
    with pytest.raises(asyncio.CancelledError):
        await respond_to_incident(payload(), deps)
    redelivered = await respond_to_incident(payload(), deps)
    assert redelivered.notice == "uncertain"  # the mail may have gone: recorded, not repeated
    assert len(graph.outbox) == 1
    assert ("risk-notify", "uncertain") in await audit(deps)


async def test_a_sent_notice_leaves_no_sending_marker_behind() -> None:
    deps, _ = make(world())
    assert (await respond_to_incident(payload(), deps)).notice == "sent"
    assert [r async for r in deps.state.list_records(SENDING)] == []


async def test_a_flaky_sink_is_retried_then_succeeds() -> None:
    graph, sink = world(), RecordingSink(failures=2)
    deps, _ = make(graph, sink)
    outcome = await respond_to_incident(payload(), deps)
    assert outcome.ticket == "opened" and sink.calls == 3


async def test_a_dead_sink_fails_the_message_and_the_next_delivery_tries_again() -> None:
    graph, sink = world(), RecordingSink(failures=3)
    deps, _ = make(graph, sink)
    with pytest.raises(TicketNotDelivered):
        await respond_to_incident(payload(), deps)
    assert len(graph.outbox) == 1  # the notice step was not held back by the failing ticket
    assert await tickets_opened(deps.state, NOW) is None  # a ticket not delivered is not counted
    outcome = await respond_to_incident(payload(), deps)
    assert (outcome.notice, outcome.ticket) == ("already-done", "opened")
    assert (TICKET, "failed") in await audit(deps)


async def test_no_partner_directory_is_audited_not_silent() -> None:
    graph = world()
    deps, _ = make(graph, None)
    outcome = await respond_to_incident(payload(), deps)
    assert outcome.ticket == "skipped"
    assert (TICKET, "skipped") in await audit(deps)


@pytest.mark.parametrize("missing", ["incidentId", "userId", "homeTenantId", "signIn"])
async def test_a_malformed_message_is_refused(missing: str) -> None:
    deps, _ = make(world())
    body = wire_body()
    body.pop(missing)
    with pytest.raises(MalformedMessage):
        await respond_to_incident(parse_message(body), deps)  # type: ignore[arg-type]
    assert await audit(deps) == []


async def test_webhook_sink_signs_the_exact_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "WH-7"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        sink = WebhookSink("https://tickets.fabrikam.com/hook", b"s3cret", http)
        graph = world()
        deps, _ = make(graph, sink)
        outcome = await respond_to_incident(payload(), deps)
    assert outcome.ticket == "opened"
    [request] = seen
    assert verify(b"s3cret", request.headers[TIMESTAMP_HEADER], request.content, request.headers[SIGNATURE_HEADER])
    assert not verify(b"other", request.headers[TIMESTAMP_HEADER], request.content, request.headers[SIGNATURE_HEADER])
    assert json.loads(request.content)["incidentId"] == "inc1"
    assert request.headers["Idempotency-Key"] == "inc1"


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "partners.json"
    path.write_text(json.dumps(document))
    return path


def test_partner_directory_resolves_tenant_then_domain_then_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "partners": [
                {"name": "Fabrikam", "tenantId": FABRIKAM, "sink": {"type": "email", "to": ["soc@fabrikam.com"]}},
                {
                    "name": "Wingtip",
                    "domains": ["wingtiptoys.com"],
                    "sink": {"type": "webhook", "url": "https://t.wingtiptoys.com/h", "secretSetting": "WT_SECRET"},
                },
            ],
            "default": {"type": "email", "to": ["servicedesk@contoso.com"]},
        },
    )
    directory = load_partner_directory(path, {"WT_SECRET": "x" * 32})
    assert directory.resolve(FABRIKAM.upper(), None).name == "Fabrikam"
    assert directory.resolve("00000000-0000-0000-0000-000000000001", "WingtipToys.com").name == "Wingtip"
    assert directory.resolve(None, "unknown.example").sink.to == ("servicedesk@contoso.com",)


def test_partner_directory_refuses_unsafe_or_incomplete_sinks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "partners": [
                {
                    "tenantId": FABRIKAM,
                    "sink": {"type": "webhook", "url": "http://tickets.fabrikam.com/h", "secretSetting": "S"},
                },
                {"domains": ["a.com"], "sink": {"type": "webhook", "url": "https://u:p@a.com/h", "secretSetting": "S"}},
                {"domains": ["b.com"], "sink": {"type": "servicenow", "instanceUrl": "https://b.service-now.com"}},
                {"domains": ["c.com"], "sink": {"type": "ftp"}},
            ]
        },
    )
    with pytest.raises(PartnerDirectoryError) as caught:
        load_partner_directory(path, {"S": "secret-value-1234"})
    text = str(caught.value)
    assert "partners[0].sink.url: expected an https URL" in text
    assert "partners[1].sink.url: must not carry credentials" in text
    assert "partners[2].sink.usernameSetting" in text
    assert "partners[3].sink.type" in text
    assert "default" in text
    assert "secret-value-1234" not in text


async def test_the_admin_view_shows_a_failed_ticket_as_open_until_it_is_opened() -> None:
    from shared.services.risk_report import blocked_incidents

    graph, sink = world(), RecordingSink(failures=3)
    deps, _ = make(graph, sink)
    with pytest.raises(TicketNotDelivered):
        await respond_to_incident(payload(), deps)
    [row] = await blocked_incidents(deps.state, NOW - timedelta(days=1))
    assert (row.notice, row.ticket, row.state) == ("sent", "failed", "open")
    await respond_to_incident(payload(), deps)
    [row] = await blocked_incidents(deps.state, NOW - timedelta(days=1))
    assert (row.ticket, row.ticket_id, row.state) == ("opened", "T-1", "done")


async def test_a_cancelled_invocation_never_leaves_a_done_notice_unaudited() -> None:
    deps, _ = make(world())
    store = deps.state
    entered, resume, audited = asyncio.Event(), asyncio.Event(), asyncio.Event()
    original_complete = store.complete

    async def slow_complete(claim: Any, outcome: Any, **audit: Any) -> Any:
        entered.set()
        await resume.wait()  # the host shuts down right here
        done = await original_complete(claim, outcome, **audit)
        audited.set()
        return done

    store.complete = slow_complete  # type: ignore[method-assign]
    task = asyncio.create_task(respond_to_incident(payload(), deps))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    resume.set()
    await asyncio.wait_for(audited.wait(), timeout=5)  # the shielded step finishes on its own
    assert ("risk-notify", "sent") in await audit(deps)
    store.complete = original_complete  # type: ignore[method-assign]
    assert (await respond_to_incident(payload(), deps)).notice == "already-done"
