"""The dashboard's dead letters in a real browser (headless Debian Chromium through Selenium) against the REAL local
Service Bus broker: a message with a markup body is dead-lettered in guest-changes, the dead-letter check timer
counts it for the overview, the dead-letters page shows it as text, and an operator resubmits it through the
confirm page: it leaves the dead-letter queue, reaches guest-changes, and the overview's count goes back to 0.

Its own world (tests/e2e/test_dashboard_browser.py's WorldThread) without the guest-changes processor, so the
resubmitted message stays in the queue to be looked at. Screenshots go to $DASHBOARD_SCREENSHOTS like the other
pages'.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from shared.domain.dashboard import READER, client_principal_header
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE, SCHEMA_VERSION
from tests.e2e.test_dashboard_browser import XSS, WorldThread, _as, _status, _text, _with_state, url
from tests.waiting import eventually_sync

pytestmark = pytest.mark.timeout(240)

FUNCTIONS = ("dashboard", "dead_letter_check")
"""The dashboard and the timer; no queue processor, so what is resubmitted waits in its queue."""


@pytest.fixture(scope="module")
def world_thread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorldThread]:
    thread = WorldThread(tmp_path_factory.mktemp("deadletters-world"), settings={}, functions=FUNCTIONS)
    try:
        thread.start()
        yield thread
    finally:
        thread.stop()


BODY = {"type": "user-changed", "schemaVersion": SCHEMA_VERSION, "userId": XSS, "source": "notification"}


def dead_letter(connection: str, queue: str, body: dict[str, Any]) -> None:
    """Send one message and dead-letter it as a processor that gave up would (nothing else reads the queue)."""
    with ServiceBusClient.from_connection_string(connection) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages(ServiceBusMessage(json.dumps(body), message_id="markup-1"))
        with client.get_queue_receiver(queue, max_wait_time=5) as receiver:
            taken = 0
            while not taken:
                for message in receiver.receive_messages(max_message_count=1):
                    receiver.dead_letter_message(message, reason="ProcessingFailed", error_description=XSS)
                    taken += 1


def peek_bodies(connection: str, queue: str, dead: bool = False) -> list[dict[str, Any]]:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead else None
    with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver,
    ):
        return [json.loads(b"".join(m.body)) for m in receiver.peek_messages(max_message_count=10)]


def test_a_dead_letter_is_counted_shown_as_text_and_resubmitted_by_an_operator(
    world_thread: WorldThread, browser: Any, shots: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    world = world_thread.world
    assert world is not None
    broker = world.broker
    dead_letter(broker.connection_string, GUEST_CHANGES_QUEUE, BODY)
    assert len(broker.dead_letters(GUEST_CHANGES_QUEUE)) == 1
    # the timer counts it into the record the overview reads (the overview itself never asks Service Bus)
    assert world_thread.run(world.host.fire_timer("dead_letter_check"))
    _as(browser, None)
    browser.get(url(world_thread))
    assert _text(browser, "#dead-letters-total") == "1"
    assert _text(browser, f'td[data-dead-letters="{GUEST_CHANGES_QUEUE}"]') == "1"
    assert _text(browser, f'td[data-dead-letters="{RISK_INCIDENTS_QUEUE}"]') == "0"
    # the page peeks live and shows the attacker-influenced body and description as text
    browser.find_element(By.CSS_SELECTOR, '#dead-letters a[href="/api/dashboard/deadletters"]').click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "table.deadletters"))
    browser.save_screenshot(str(shots / "deadletters.png"))
    row = _text(browser, f'table.deadletters[data-queue="{GUEST_CHANGES_QUEUE}"] tbody tr')
    assert XSS in row and "ProcessingFailed" in row and GUEST_CHANGES_QUEUE in row
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check
    assert browser.find_elements(By.CSS_SELECTOR, f'[data-empty="{RISK_INCIDENTS_QUEUE}"]')
    # a reader sees the page but gets no button, and cannot open the confirm page
    reader = client_principal_header("reader@contoso.com", [READER])
    assert _status(url(world_thread, "deadletters"), reader)[0] == 200
    confirm = f"confirm?action=resubmit-deadletters&target={GUEST_CHANGES_QUEUE}"
    assert _status(url(world_thread, confirm), reader)[0] == 403
    assert _status(url(world_thread, "confirm?action=resubmit-deadletters&target=other-queue"))[0] == 404
    # the operator resubmits through the confirm page (which itself changes nothing)
    browser.find_element(By.ID, f"resubmit-{GUEST_CHANGES_QUEUE}").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "confirm"))
    assert len(broker.dead_letters(GUEST_CHANGES_QUEUE)) == 1
    browser.find_element(By.ID, "confirm").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "done"))
    assert "1 dead letter(s) sent back" in _text(browser, "#done")
    assert XSS in _text(browser, "#resubmitted")
    assert not browser.find_elements(By.CSS_SELECTOR, "main img")
    browser.save_screenshot(str(shots / "deadletters-done.png"))
    # it left the dead-letter queue and waits in guest-changes, the same body
    assert eventually_sync(
        lambda: not broker.dead_letters(GUEST_CHANGES_QUEUE) and broker.queue_depth(GUEST_CHANGES_QUEUE) == 1
    )
    assert peek_bodies(broker.connection_string, GUEST_CHANGES_QUEUE) == [BODY]
    assert peek_bodies(broker.connection_string, GUEST_CHANGES_QUEUE, dead=True) == []
    # the overview's count went to 0 (the resubmit refreshed the record; so does the next check)
    browser.get(url(world_thread))
    assert _text(browser, "#dead-letters-total") == "0"
    assert world_thread.run(world.host.fire_timer("dead_letter_check"))
    browser.get(url(world_thread))
    assert _text(browser, "#dead-letters-total") == "0"
    # audited with the operator as actor
    since = world.sim.clock.now() - timedelta(days=1)
    entries = world_thread.run(_with_state(lambda s: _entries(s, since)))
    [entry] = entries
    assert entry.actor == "operator:operator@contoso.com" and entry.subject == GUEST_CHANGES_QUEUE
    assert entry.evidence["resubmitted"] == 1 and len(entry.evidence["sequenceNumbers"]) == 1


async def _entries(state: Any, since: Any) -> list[Any]:
    return [e async for e in state.query(since, action="dashboard-resubmit-deadletters")]
