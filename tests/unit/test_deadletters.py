"""The dead-letter counts the overview reads (shared.services.deadletters) and the dashboard's dead-letters page and
resubmit action, with a fake port and the in-memory state (the browser test runs them on the local broker)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.templates import DashboardTemplates
from shared.domain.dashboard import OPERATOR, READER, client_principal_header, form_code, parse_client_principal
from shared.domain.deadletters import PEEK_CAP, DeadLetter, summarise
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.domain.stale import StalePolicy
from shared.ports.publisher import QueueError
from shared.services.dashboard import DashboardConfig, DashboardDeps, DashboardRequest, handle_dashboard
from shared.services.deadletters import (
    RECORD_KEY,
    RECORD_KIND,
    DeadLetterDeps,
    UnknownQueue,
    check_dead_letters,
    load_dead_letters,
    refresh_dead_letters,
    resubmit_dead_letters,
)
from tests.fakes.state import MemoryStateStore

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
KEY = "dashboard-test-key-0123456789abcdef0123"
BASE = "https://guestwarden.example.net"
QUEUES = (GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)
XSS = "<img src=x onerror=alert(1)>"
READER_HEADER = client_principal_header("reader@contoso.com", [READER])
OPERATOR_HEADER = client_principal_header("op@contoso.com", [OPERATOR])


def letter(queue: str, seq: int, reason: str | None = "MaxDeliveryCountExceeded", body: str = "{}") -> DeadLetter:
    return DeadLetter(queue, seq, f"m-{seq}", NOW - timedelta(hours=seq), reason, "Graph said 403", 5, body)


class FakeQueues:
    """The DeadLetterQueues port in memory: dead letters per queue, what was sent back, a queue that fails."""

    def __init__(self, letters: dict[str, list[DeadLetter]] | None = None, broken: Collection[str] = ()) -> None:
        self.letters = letters or {}
        self.broken = set(broken)
        self.sent: dict[str, list[DeadLetter]] = {}
        self.peeks = 0

    async def peek(self, queue: str, max_count: int = 100) -> list[DeadLetter]:
        self.peeks += 1
        if queue in self.broken:
            raise QueueError(queue, "ServiceBusAuthorizationError: Listen is missing")
        return list(self.letters.get(queue, []))[:max_count]

    async def resubmit(
        self, queue: str, sequence_numbers: Collection[int] | None = None, max_count: int = 100
    ) -> list[DeadLetter]:
        if queue in self.broken:
            raise QueueError(queue, "ServiceBusAuthorizationError: Send is missing")
        taken = self.letters.get(queue, [])[:max_count]
        self.letters[queue] = self.letters.get(queue, [])[max_count:]
        self.sent.setdefault(queue, []).extend(taken)
        return taken


def dl_deps(port: FakeQueues, state: MemoryStateStore | None = None) -> DeadLetterDeps:
    return DeadLetterDeps(port, state or MemoryStateStore(), lambda: NOW, QUEUES)


# --- the service ----------------------------------------------------------------------------------------------


def test_a_summary_counts_reasons_and_the_oldest_and_caps() -> None:
    letters = [letter("q", 1), letter("q", 2, reason=None), letter("q", 3, reason="MalformedMessage"), letter("q", 4)]
    summary = summarise(letters, cap=10)
    assert summary == {
        "count": 4,
        "capped": False,
        "oldest": (NOW - timedelta(hours=4)).isoformat(),
        "reasons": {"MaxDeliveryCountExceeded": 2, "(no reason)": 1, "MalformedMessage": 1},
    }
    capped = summarise(letters, cap=3)
    assert capped["count"] == 3 and capped["capped"] is True


async def test_refresh_keeps_counts_per_queue_in_one_record_and_no_body() -> None:
    port = FakeQueues({GUEST_CHANGES_QUEUE: [letter(GUEST_CHANGES_QUEUE, 1, body=XSS), letter(GUEST_CHANGES_QUEUE, 2)]})
    state = MemoryStateStore()
    await refresh_dead_letters(port, state, lambda: NOW, QUEUES)
    record = await state.get(RECORD_KIND, RECORD_KEY)
    assert record is not None
    value: dict[str, Any] = record.value
    assert value["asOf"] == NOW.isoformat()
    assert value["queues"][GUEST_CHANGES_QUEUE]["count"] == 2
    assert value["queues"][RISK_INCIDENTS_QUEUE]["count"] == 0
    assert "onerror" not in str(value) and "Graph said" not in str(value)
    loaded = await load_dead_letters(state)
    assert loaded is not None and loaded["total"] == 2 and loaded["shown"] == "2" and loaded["as_of"] == NOW


async def test_more_than_the_cap_shows_as_cap_plus() -> None:
    many = [letter(GUEST_CHANGES_QUEUE, i) for i in range(1, PEEK_CAP + 6)]
    state = MemoryStateStore()
    await refresh_dead_letters(FakeQueues({GUEST_CHANGES_QUEUE: many}), state, lambda: NOW, QUEUES)
    loaded = await load_dead_letters(state)
    assert loaded is not None
    assert loaded["queues"][GUEST_CHANGES_QUEUE]["shown"] == f"{PEEK_CAP}+" and loaded["shown"] == f"{PEEK_CAP}+"


async def test_an_unreadable_queue_keeps_its_last_counts_with_the_error() -> None:
    state = MemoryStateStore()
    port = FakeQueues({RISK_INCIDENTS_QUEUE: [letter(RISK_INCIDENTS_QUEUE, 1)]})
    await refresh_dead_letters(port, state, lambda: NOW, QUEUES)
    port.broken.add(RISK_INCIDENTS_QUEUE)
    await refresh_dead_letters(port, state, lambda: NOW, QUEUES)
    loaded = await load_dead_letters(state)
    assert loaded is not None
    assert loaded["queues"][RISK_INCIDENTS_QUEUE]["count"] == 1
    assert "Listen is missing" in loaded["queues"][RISK_INCIDENTS_QUEUE]["error"]


async def test_never_refreshed_is_none() -> None:
    assert await load_dead_letters(MemoryStateStore()) is None


async def test_the_check_warns_naming_queue_and_count_never_the_body(caplog: pytest.LogCaptureFixture) -> None:
    port = FakeQueues({GUEST_CHANGES_QUEUE: [letter(GUEST_CHANGES_QUEUE, 1, body=XSS), letter(GUEST_CHANGES_QUEUE, 2)]})
    with caplog.at_level(logging.INFO, logger="shared.services.deadletters"):
        await check_dead_letters(dl_deps(port))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert GUEST_CHANGES_QUEUE in warnings[0] and "2 dead letter(s)" in warnings[0]
    assert "MaxDeliveryCountExceeded" in warnings[0]
    assert all("onerror" not in r.getMessage() and "Graph said" not in r.getMessage() for r in caplog.records)


async def test_the_check_without_dead_letters_warns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="shared.services.deadletters"):
        await check_dead_letters(dl_deps(FakeQueues()))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_resubmit_sends_back_refreshes_and_refuses_other_queues() -> None:
    port = FakeQueues({GUEST_CHANGES_QUEUE: [letter(GUEST_CHANGES_QUEUE, 1), letter(GUEST_CHANGES_QUEUE, 2)]})
    deps = dl_deps(port)
    await check_dead_letters(deps)
    sent = await resubmit_dead_letters(deps, GUEST_CHANGES_QUEUE)
    assert [d.sequence_number for d in sent] == [1, 2]
    loaded = await load_dead_letters(deps.state)
    assert loaded is not None and loaded["total"] == 0
    with pytest.raises(UnknownQueue):
        await resubmit_dead_letters(deps, "someone-elses-queue")


# --- the dashboard --------------------------------------------------------------------------------------------


async def _no_restore(run_id: str, actor: str) -> list[Any]:
    raise AssertionError("a dead-letter request must not restore")


def dashboard(port: FakeQueues | None, state: MemoryStateStore | None = None) -> DashboardDeps:
    state = state or MemoryStateStore()
    return DashboardDeps(
        state=state,
        templates=DashboardTemplates(),
        names=_NoNames(),
        config=DashboardConfig(KEY, BASE),
        policy=StalePolicy(),
        clock=lambda: NOW,
        restore_run=_no_restore,
        dead_letters=dl_deps(port, state) if port is not None else None,
    )


class _NoNames:
    async def names(self, user_ids: list[str]) -> dict[str, str]:
        return {}


def get(path: str, header: str, params: dict[str, str] | None = None) -> DashboardRequest:
    return DashboardRequest("GET", path, params or {}, {}, {"X-MS-CLIENT-PRINCIPAL": header})


def post(header: str, target: str, code: str | None = None) -> DashboardRequest:
    principal = parse_client_principal(header)
    assert principal is not None
    code = code if code is not None else form_code(KEY, principal, "resubmit-deadletters", target, NOW)
    form = {"action": "resubmit-deadletters", "target": target, "code": code}
    return DashboardRequest("POST", "act", {}, form, {"X-MS-CLIENT-PRINCIPAL": header, "Origin": BASE})


def markup_port() -> FakeQueues:
    return FakeQueues({GUEST_CHANGES_QUEUE: [letter(GUEST_CHANGES_QUEUE, 7, body=f'{{"userId": "{XSS}"}}')]})


async def test_a_reader_sees_the_page_with_bodies_as_text_but_no_resubmit_button() -> None:
    deps = dashboard(markup_port())
    page = await handle_dashboard(get("deadletters", READER_HEADER), deps)
    body = page.body.decode()
    assert page.status == 200
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "<img src=x" not in body
    assert "MaxDeliveryCountExceeded" in body and "Graph said 403" in body
    assert 'id="resubmit-' not in body
    assert (await load_dead_letters(deps.state)) is None  # a GET changes nothing, not even the overview's count
    operator = (await handle_dashboard(get("deadletters", OPERATOR_HEADER), deps)).body.decode()
    assert f'id="resubmit-{GUEST_CHANGES_QUEUE}"' in operator
    assert f'id="resubmit-{RISK_INCIDENTS_QUEUE}"' not in operator  # nothing to resubmit there


async def test_the_overview_shows_the_kept_counts_without_peeking() -> None:
    port = markup_port()
    deps = dashboard(port)
    await check_dead_letters(deps.dead_letters)  # type: ignore[arg-type]
    peeks = port.peeks
    page = (await handle_dashboard(get("", READER_HEADER), deps)).body.decode()
    assert port.peeks == peeks
    assert 'id="dead-letters"' in page and 'id="dead-letters-total">1<' in page
    assert f'data-dead-letters="{GUEST_CHANGES_QUEUE}">1<' in page


async def test_a_reader_cannot_resubmit() -> None:
    port = markup_port()
    deps = dashboard(port)
    params = {"action": "resubmit-deadletters", "target": GUEST_CHANGES_QUEUE}
    assert (await handle_dashboard(get("confirm", READER_HEADER, params), deps)).status == 403
    assert (await handle_dashboard(post(READER_HEADER, GUEST_CHANGES_QUEUE), deps)).status == 403
    assert port.sent == {}


async def test_an_operator_resubmits_with_the_code_audited_as_the_operator() -> None:
    port = markup_port()
    deps = dashboard(port)
    forged = await handle_dashboard(post(OPERATOR_HEADER, GUEST_CHANGES_QUEUE, code="1.forged"), deps)
    assert forged.status == 403 and port.sent == {}
    params = {"action": "resubmit-deadletters", "target": GUEST_CHANGES_QUEUE}
    confirm = await handle_dashboard(get("confirm", OPERATOR_HEADER, params), deps)
    assert confirm.status == 200 and b'id="confirm"' in confirm.body and port.sent == {}
    done = await handle_dashboard(post(OPERATOR_HEADER, GUEST_CHANGES_QUEUE), deps)
    body = done.body.decode()
    assert done.status == 200 and 'id="done"' in body and "1 dead letter(s) sent back" in body
    assert "&lt;img src=x" in body and "<img src=x" not in body
    assert [d.sequence_number for d in port.sent[GUEST_CHANGES_QUEUE]] == [7]
    [entry] = [e async for e in deps.state.query(NOW - timedelta(days=1), action="dashboard-resubmit-deadletters")]
    assert entry.actor == "operator:op@contoso.com" and entry.subject == GUEST_CHANGES_QUEUE
    assert entry.evidence == {"queue": GUEST_CHANGES_QUEUE, "resubmitted": 1, "sequenceNumbers": [7]}
    loaded = await load_dead_letters(deps.state)
    assert loaded is not None and loaded["total"] == 0


@pytest.mark.parametrize("target", ["someone-elses-queue", "guest-changes/$DeadLetterQueue", "../x", ""])
async def test_only_guestwardens_queues_can_be_resubmitted(target: str) -> None:
    port = markup_port()
    deps = dashboard(port)
    params = {"action": "resubmit-deadletters", "target": target}
    assert (await handle_dashboard(get("confirm", OPERATOR_HEADER, params), deps)).status in (400, 404)
    assert (await handle_dashboard(post(OPERATOR_HEADER, target), deps)).status in (400, 404)
    assert port.sent == {}


async def test_without_service_bus_the_page_says_so_and_the_action_answers_409() -> None:
    deps = dashboard(None)
    page = await handle_dashboard(get("deadletters", OPERATOR_HEADER), deps)
    assert page.status == 200 and b'id="deadletters-off"' in page.body
    done = await handle_dashboard(post(OPERATOR_HEADER, GUEST_CHANGES_QUEUE), deps)
    assert done.status == 409 and b"Service Bus" in done.body


async def test_a_refused_resubmit_is_audited_and_answers_502() -> None:
    port = markup_port()
    port.broken.add(GUEST_CHANGES_QUEUE)
    deps = dashboard(port)
    refused = await handle_dashboard(post(OPERATOR_HEADER, GUEST_CHANGES_QUEUE), deps)
    assert refused.status == 502 and b"Send is missing" in refused.body
    [entry] = [e async for e in deps.state.query(NOW - timedelta(days=1), action="dashboard-resubmit-deadletters")]
    assert entry.outcome == "failed" and entry.actor == "operator:op@contoso.com"


def test_the_bootstrap_wires_dead_letters_only_with_service_bus() -> None:
    from shared.bootstrap import OPERATOR_QUEUES, dead_letter_deps
    from shared.settings import Feature, load_settings

    state = MemoryStateStore()
    without = load_settings({}, (Feature.STATE,))
    assert dead_letter_deps(without, state) is None
    connection = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=local;UseDevelopmentEmulator=true;"
    wired = dead_letter_deps(load_settings({"SERVICEBUS_CONNECTION": connection}, (Feature.STATE,)), state)
    assert wired is not None and wired.queues == OPERATOR_QUEUES == QUEUES
