"""Day-2 commands as an operator runs them: `guestwarden audit` on the embedded state store and
`guestwarden deadletters list|resubmit` against the local Service Bus broker (real azure-servicebus)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from local.servicebus_broker import LocalServiceBusBroker
from shared.adapters.state.sqlite import SqliteStateStore
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.ports.state import AuditEntry
from tests.e2e.cli import guestwarden
from tests.fixtures.servicebus import BrokerFactory

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return guestwarden(*args, env=env)


@pytest.fixture
def broker(servicebus_broker_factory: BrokerFactory) -> LocalServiceBusBroker:
    return servicebus_broker_factory(queues=(GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE))


@pytest.fixture
def env(broker: LocalServiceBusBroker, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SERVICEBUS_CONNECTION": broker.connection_string,
        "STATE_BACKEND": "sqlite",
        "STATE_SQLITE_PATH": str(tmp_path / "state.db"),
    }


def dead_letter(broker: LocalServiceBusBroker, queue: str, bodies: list[dict[str, str]], reason: str) -> None:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        with client.get_queue_sender(queue) as sender:
            sender.send_messages([ServiceBusMessage(json.dumps(b), message_id=f"m-{i}") for i, b in enumerate(bodies)])
        with client.get_queue_receiver(queue, max_wait_time=5) as receiver:
            taken = 0
            while taken < len(bodies):
                for message in receiver.receive_messages(max_message_count=len(bodies)):
                    receiver.dead_letter_message(message, reason=reason, error_description="Graph said 403")
                    taken += 1


def drain(broker: LocalServiceBusBroker, queue: str) -> list[dict[str, object]]:
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_receiver(queue, max_wait_time=3) as receiver,
    ):
        messages = receiver.receive_messages(max_message_count=50)
        for message in messages:
            receiver.complete_message(message)
        return [json.loads(b"".join(m.body)) for m in messages]


def test_list_shows_each_dead_letter_with_its_reason_and_changes_nothing(
    broker: LocalServiceBusBroker, env: dict[str, str]
) -> None:
    dead_letter(broker, GUEST_CHANGES_QUEUE, [{"userId": "u-1"}, {"userId": "u-2"}], "ProcessingFailed")
    result = run(env, "deadletters", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["queue"], json.loads(r["body"])["userId"]) for r in rows] == [
        (GUEST_CHANGES_QUEUE, "u-1"),
        (GUEST_CHANGES_QUEUE, "u-2"),
    ]
    assert {r["reason"] for r in rows} == {"ProcessingFailed"}
    assert {r["description"] for r in rows} == {"Graph said 403"}
    assert len(broker.dead_letters(GUEST_CHANGES_QUEUE)) == 2  # peeked, not taken

    human = run(env, "deadletters", "list")
    assert human.returncode == 0 and "ProcessingFailed" in human.stdout and "resubmit" in human.stderr


def test_resubmit_is_a_dry_run_until_yes_then_moves_only_the_chosen(
    broker: LocalServiceBusBroker, env: dict[str, str]
) -> None:
    dead_letter(broker, GUEST_CHANGES_QUEUE, [{"userId": "u-1"}, {"userId": "u-2"}], "ProcessingFailed")
    [first, second] = json.loads(run(env, "deadletters", "list", "--json").stdout)

    dry = run(env, "deadletters", "resubmit", "--queue", GUEST_CHANGES_QUEUE, "--json")
    assert dry.returncode == 0, dry.stderr
    assert {r["status"] for r in json.loads(dry.stdout)} == {"would resubmit"}
    assert len(broker.dead_letters(GUEST_CHANGES_QUEUE)) == 2

    chosen = run(
        env, "deadletters", "resubmit", "--queue", GUEST_CHANGES_QUEUE, "--seq", str(second["sequenceNumber"]), "--yes"
    )
    assert chosen.returncode == 0, chosen.stderr
    assert "1 message(s) resubmitted" in chosen.stderr
    assert drain(broker, GUEST_CHANGES_QUEUE) == [{"userId": "u-2"}]  # back in the queue, for the processor
    remaining = json.loads(run(env, "deadletters", "list", "--json").stdout)
    assert [r["sequenceNumber"] for r in remaining] == [first["sequenceNumber"]]


def test_resubmitted_copy_survives_duplicate_detection_by_a_new_message_id(
    broker: LocalServiceBusBroker, env: dict[str, str]
) -> None:
    dead_letter(broker, RISK_INCIDENTS_QUEUE, [{"incident": "i-1"}], "MaxDeliveryCountExceeded")
    result = run(env, "deadletters", "resubmit", "--queue", RISK_INCIDENTS_QUEUE, "--yes", "--json")
    assert result.returncode == 0, result.stderr
    with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_receiver(RISK_INCIDENTS_QUEUE, max_wait_time=3) as receiver,
    ):
        [copy] = receiver.receive_messages(max_message_count=5)
        receiver.complete_message(copy)
    assert copy.message_id == "m-0:resubmit:" + str(json.loads(result.stdout)[0]["sequenceNumber"])
    assert copy.application_properties and copy.application_properties[b"guestwarden-resubmitted-from"]
    assert broker.dead_letters(RISK_INCIDENTS_QUEUE) == []


def test_unknown_queue_is_a_usage_error(env: dict[str, str]) -> None:
    result = run(env, "deadletters", "list", "--queue", "guest-changez")
    assert result.returncode == 2 and "guest-changez" in result.stderr and GUEST_CHANGES_QUEUE in result.stderr


def test_audit_shows_what_was_done_to_one_guest_newest_last(env: dict[str, str]) -> None:
    now = datetime.now(UTC)

    async def seed() -> None:
        def entry(at: datetime, action: str, subject: str, reason: str, dry_run: bool, outcome: str) -> AuditEntry:
            actor = "stale-sweep" if action.startswith("stale") else "license-processor"
            return AuditEntry(
                at=at, actor=actor, action=action, subject=subject, reason=reason, dry_run=dry_run, outcome=outcome
            )

        async with SqliteStateStore(Path(env["STATE_SQLITE_PATH"])) as state:
            await state.append(
                entry(now - timedelta(minutes=30), "set-usage-location", "g-1", "accepted", False, "done")
            )
            await state.append(entry(now - timedelta(minutes=20), "assign-license", "g-1", "accepted", False, "done"))
            await state.append(entry(now, "stale-warn", "g-2", "inactive 120 days", True, "would-do"))
            await state.append(entry(now - timedelta(days=30), "stale-warn", "g-1", "old", False, "done"))

    asyncio.run(seed())
    result = run(env, "audit", "--subject", "g-1", "--json")
    assert result.returncode == 0, result.stderr
    assert [(r["action"], r["outcome"]) for r in json.loads(result.stdout)] == [
        ("set-usage-location", "done"),
        ("assign-license", "done"),
    ]  # the 30-day-old entry is outside the default 7 days
    everything = json.loads(run(env, "audit", "--days", "60", "--json").stdout)
    assert len(everything) == 4
    human = run(env, "audit", "--action", "stale-warn")
    assert human.returncode == 0 and "(dry run)" in human.stdout and "g-2" in human.stdout
