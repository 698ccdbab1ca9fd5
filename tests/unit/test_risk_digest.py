"""send_risk_digest on fakes: what the admins' daily digest says, and that it goes out at most once a day."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from shared.adapters.graph import GraphError
from shared.adapters.templates import RiskTemplates
from shared.ports.state import AuditEntry
from shared.services.risk_detection import RISK_INCIDENT
from shared.services.risk_digest import DIGEST, DigestDeps, build_digest, send_risk_digest
from shared.services.risk_response import NOTIFY, TICKET
from shared.settings import Feature, SettingsError, load_settings
from tests.fakes.state import MemoryStateStore
from tests.unit.risk_fakes import FABRIKAM, NOW, FakeRiskGraph, MovingClock

ADMINS = ("megan@contoso.com", "secops@contoso.com")
SENDER = "guestwarden@contoso.com"
EVIL = '<script>alert("x")</script><img src=x onerror=steal()>'


def deps(
    state: MemoryStateStore,
    graph: FakeRiskGraph,
    clock: MovingClock,
    *,
    enabled: bool = True,
    body_format: Literal["html", "text"] = "html",
    template_dir: Path | None = None,
) -> DigestDeps:
    return DigestDeps(
        graph=graph,
        state=state,
        templates=RiskTemplates(template_dir),
        enabled=enabled,
        sender=SENDER,
        recipients=ADMINS,
        organisation="Contoso",
        body_format=body_format,
        clock=clock,
    )


async def incident(
    state: MemoryStateStore,
    incident_id: str,
    at: datetime,
    *,
    guest: str = "rita_fabrikam.com#EXT#@contoso.onmicrosoft.com",
    notice: str | None = "sent",
    ticket: str | None = "opened",
    ticket_id: str = "T-1",
    home_organisation: str = "Fabrikam, Inc.",
) -> None:
    """The audit entries the poller and the responder write for one incident."""

    async def append(action: str, outcome: str, **evidence: Any) -> None:
        await state.append(
            AuditEntry(
                at=at,
                actor="test",
                action=action,
                subject="user-" + incident_id,
                reason="because",
                dry_run=False,
                outcome=outcome,
                evidence={"incidentId": incident_id, **evidence},
            )
        )

    await append(
        RISK_INCIDENT, "detected", homeTenantId=FABRIKAM, userPrincipalName=guest, errorCode=53011, signInId="s1"
    )
    if notice is not None:
        await append(NOTIFY, notice)
    if ticket is not None:
        extra = {"ticketId": ticket_id, "sink": "webhook", "partner": "Fabrikam"} if ticket == "opened" else {}
        await append(TICKET, ticket, homeOrganisation=home_organisation, **extra)


@pytest.fixture
def world() -> tuple[MemoryStateStore, FakeRiskGraph, MovingClock]:
    clock = MovingClock(NOW)
    return MemoryStateStore(clock=clock), FakeRiskGraph(clock), clock


async def test_digest_lists_new_incidents_and_older_open_ones(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "new-done", NOW - timedelta(hours=3), ticket_id="SNOW-INC0012345")
    await incident(state, "new-open", NOW - timedelta(hours=1), ticket="failed", guest="bob_tailspin.co.uk#EXT#@x")
    await incident(state, "old-open", NOW - timedelta(days=3), notice="uncertain", ticket=None)
    await incident(state, "old-done", NOW - timedelta(days=2))  # closed and not new: not in the digest

    outcome = await send_risk_digest(deps(state, graph, clock))

    assert (outcome.status, outcome.recent, outcome.still_open) == ("sent", 2, 1)
    [mail] = graph.outbox
    assert (mail.sender, mail.to, mail.body_type) == (SENDER, ADMINS, "HTML")
    assert mail.subject == "guestwarden 2026-11-23: 2 new risk-blocked guest incident(s), 2 open"
    body = mail.body
    assert "user-new-done" not in body  # object ids are not shown; the UPN is
    for text in (
        "rita_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "bob_tailspin.co.uk#EXT#@x",
        "Fabrikam, Inc.",
        "SNOW-INC0012345",
        "53011",
        "uncertain",
        "failed",
        "new-open",
        "old-open",
    ):
        assert text in body, text
    assert "old-done" not in body
    assert body.index("new-open") < body.index("new-done") < body.index("old-open")  # newest first, then older


async def test_text_digest_when_the_notice_format_is_text(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "inc1", NOW - timedelta(hours=2), ticket="pending")

    await send_risk_digest(deps(state, graph, clock, body_format="text"))

    [mail] = graph.outbox
    assert mail.body_type == "Text"
    assert "Detected in the last 24 hours:" in mail.body
    assert "home organisation: Fabrikam, Inc.; error code: 53011" in mail.body
    assert "ticket: pending; state: open" in mail.body


async def test_names_from_outside_are_escaped_and_cannot_forge_lines(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "inc1", NOW - timedelta(hours=2), home_organisation=EVIL, ticket_id="<b>T-1</b>")
    await incident(
        state, "inc2", NOW - timedelta(hours=1), home_organisation="Evil\nFAKE LINE: all clear\r\n", ticket="pending"
    )

    await send_risk_digest(deps(state, graph, clock))
    html = graph.outbox[0].body
    assert "<script>" not in html and "<img" not in html and "<b>T-1" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;T-1&lt;/b&gt;" in html

    graph.outbox.clear()
    clock.advance(days=1)  # inc2 is still open (its ticket is pending): in the next day's digest
    await send_risk_digest(deps(state, graph, clock, body_format="text"))
    text = graph.outbox[0].body
    assert "\nFAKE LINE" not in text and "Evil FAKE LINE: all clear" in text
    assert "\r" not in text


async def test_at_most_one_digest_a_day(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "inc1", NOW - timedelta(hours=2), ticket="failed")

    assert (await send_risk_digest(deps(state, graph, clock))).status == "sent"
    clock.advance(hours=6)
    assert (await send_risk_digest(deps(state, graph, clock))).status == "already-sent"
    assert len(graph.outbox) == 1

    clock.advance(days=1)  # the next day: the incident is older but still open
    outcome = await send_risk_digest(deps(state, graph, clock))
    assert (outcome.status, outcome.recent, outcome.still_open) == ("sent", 0, 1)
    assert len(graph.outbox) == 2

    sends = [e async for e in state.query(NOW - timedelta(days=1), action=DIGEST)]
    assert [(e.subject, e.outcome) for e in sends] == [("2026-11-23", "sent"), ("2026-11-24", "sent")]
    assert sends[0].evidence == {"day": "2026-11-23", "recipients": 2, "recent": 1, "still_open": 0, "open": 1}


async def test_nothing_to_report_sends_nothing_and_says_so(world: Any, caplog: pytest.LogCaptureFixture) -> None:
    state, graph, clock = world
    await incident(state, "old-done", NOW - timedelta(days=2))

    with caplog.at_level("INFO"):
        outcome = await send_risk_digest(deps(state, graph, clock))

    assert outcome.status == "nothing-to-report"
    assert graph.outbox == []
    assert "nothing to report" in caplog.text
    # the day's claim was released: an incident later the same day is still reported
    clock.advance(hours=2)
    await incident(state, "later", clock())
    assert (await send_risk_digest(deps(state, graph, clock))).status == "sent"


async def test_disabled_sends_nothing(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "inc1", NOW - timedelta(hours=2), ticket="failed")

    assert (await send_risk_digest(deps(state, graph, clock, enabled=False))).status == "disabled"
    assert graph.outbox == []
    assert [e async for e in state.query(NOW - timedelta(days=1), action=DIGEST)] == []


async def test_refused_send_is_retried_unknown_outcome_is_not(world: Any) -> None:
    state, graph, clock = world
    await incident(state, "inc1", NOW - timedelta(hours=2))

    graph.mail_failures.append(GraphError(403, "ErrorAccessDenied", "refused"))
    with pytest.raises(GraphError):
        await send_risk_digest(deps(state, graph, clock))
    graph.mail_failures.append(GraphError(504, "GatewayTimeout", "timeout"))
    assert (await send_risk_digest(deps(state, graph, clock))).status == "uncertain"
    assert (await send_risk_digest(deps(state, graph, clock))).status == "already-sent"
    assert graph.outbox == []
    outcomes = [e.outcome async for e in state.query(NOW - timedelta(days=1), action=DIGEST)]
    assert outcomes == ["failed", "uncertain"]


async def test_no_secrets_or_audit_reasons_in_the_digest(world: Any) -> None:
    state, graph, clock = world
    await state.append(
        AuditEntry(
            at=NOW - timedelta(hours=1),
            actor="test",
            action=TICKET,
            subject="user-inc1",
            reason="POST https://hooks.example/secret-token-123 failed",
            dry_run=False,
            outcome="failed",
            evidence={"incidentId": "inc1", "sink": "webhook", "partner": "Fabrikam"},
        )
    )
    digest = await build_digest(deps(state, graph, clock))
    assert len(digest.recent) + len(digest.still_open) == 1

    await send_risk_digest(deps(state, graph, clock))
    assert "secret-token-123" not in graph.outbox[0].body


async def test_digest_templates_can_be_overridden(world: Any, tmp_path: Path) -> None:
    state, graph, clock = world
    (tmp_path / "digest.subject.txt").write_text("Daily risk: {{ open_count }} open")
    await incident(state, "inc1", NOW - timedelta(hours=2), ticket="failed")

    await send_risk_digest(deps(state, graph, clock, template_dir=tmp_path))
    assert graph.outbox[0].subject == "Daily risk: 1 open"
    assert "inc1" in graph.outbox[0].body  # digest.html is still the built-in one


def test_enabling_the_digest_requires_sender_and_recipients() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"RISK_DIGEST_ENABLED": "true", "RISK_DIGEST_SCHEDULE": "0 7 * * *"}, [Feature.RISK])
    names = {p.split(":")[0] for p in caught.value.problems}
    assert {"MAIL_SENDER", "ADMIN_ALERT_RECIPIENTS", "RISK_DIGEST_SCHEDULE"} <= names

    off = load_settings({"MAIL_SENDER": SENDER}, [Feature.RISK])
    assert (off.risk.digest_enabled, off.risk.digest_schedule) == (False, "0 0 7 * * *")
    on = load_settings(
        {"MAIL_SENDER": SENDER, "ADMIN_ALERT_RECIPIENTS": ",".join(ADMINS), "RISK_DIGEST_ENABLED": "true"},
        [Feature.RISK],
    )
    assert on.risk.digest_enabled and on.mail.alert_recipients == ADMINS
