"""The in-memory queue fake and the message envelope (encode / decode_message)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.queue import to_servicebus_message
from shared.domain.messages import SCHEMA_VERSION, MalformedMessage, decode_message
from shared.ports.publisher import OutgoingMessage, QueueError
from tests.fakes.publisher import InMemoryPublisher


def msg(message_id: str = "m-1", **body: object) -> OutgoingMessage:
    return OutgoingMessage(message_id=message_id, type="guest.accepted", body=body or {"userId": "u1"})


async def test_fake_records_per_queue_and_collapses_duplicate_ids() -> None:
    fake = InMemoryPublisher()
    await fake.publish("guest-accepted", msg("a", userId="u1"))
    await fake.publish("guest-accepted", msg("a", userId="changed"))
    await fake.publish_many("guest-accepted", [msg("b"), msg("a")])
    await fake.publish("risk-incidents", msg("a"))  # ids are per queue, like Service Bus

    assert [m.message_id for m in fake.messages("guest-accepted")] == ["a", "b"]
    assert fake.bodies("guest-accepted")[0] == {"userId": "u1", "type": "guest.accepted", "schemaVersion": 1}
    assert fake.duplicates == 2
    assert len(fake.messages("risk-incidents")) == 1
    assert fake.messages("nothing-here") == []


async def test_fake_failure_injection_and_close() -> None:
    fake = InMemoryPublisher(fail_queues={"guest-accepted": "namespace throttled"})
    with pytest.raises(QueueError) as info:
        await fake.publish("guest-accepted", msg())
    assert (info.value.queue, info.value.reason) == ("guest-accepted", "namespace throttled")
    async with InMemoryPublisher() as other:
        await other.publish("q", msg())
    assert other.closed
    with pytest.raises(QueueError, match="closed"):
        await other.publish("q", msg())


def test_envelope_adds_type_and_schema_version() -> None:
    body = json.loads(msg(userId="u1", when=datetime(2024, 1, 2, tzinfo=UTC)).encoded_body())
    assert body == {
        "userId": "u1",
        "when": "2024-01-02T00:00:00+00:00",
        "type": "guest.accepted",
        "schemaVersion": SCHEMA_VERSION,
    }
    assert decode_message(msg().encoded_body())["type"] == "guest.accepted"


def test_outgoing_message_validation() -> None:
    with pytest.raises(ValueError, match="message_id"):
        OutgoingMessage(message_id="", type="t", body={})
    with pytest.raises(ValueError, match="message_id"):
        OutgoingMessage(message_id="x" * 129, type="t", body={})
    with pytest.raises(ValueError, match="timezone-aware"):
        OutgoingMessage(message_id="x", type="t", body={}, scheduled_enqueue_time=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="envelope"):
        OutgoingMessage(message_id="x", type="t", body={"schemaVersion": 2})
    with pytest.raises(ValueError):
        OutgoingMessage(message_id="x", type="t", body={"n": float("nan")}).encoded_body()


def test_servicebus_message_mapping() -> None:
    when = datetime.now(UTC) + timedelta(minutes=5)
    out = OutgoingMessage(
        message_id="sub:user:7",
        type="guest.accepted",
        body={"userId": "u1"},
        scheduled_enqueue_time=when,
        correlation_id="corr-1",
        application_properties={"attempt": 2},
    )
    sb = to_servicebus_message(out)
    assert sb.message_id == "sub:user:7"
    assert sb.correlation_id == "corr-1"
    assert sb.subject == "guest.accepted"
    assert sb.content_type == "application/json"
    assert sb.application_properties == {"attempt": 2}
    assert sb.scheduled_enqueue_time_utc is not None
    assert abs((sb.scheduled_enqueue_time_utc - when).total_seconds()) < 0.01
    assert json.loads(str(sb))["schemaVersion"] == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        ("{not json", "not valid JSON"),
        ('{"a": NaN, "type": "t", "schemaVersion": 1}', "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "t"}', "no schemaVersion"),
        ('{"type": "t", "schemaVersion": "1"}', "must be an integer"),
        ('{"type": "t", "schemaVersion": true}', "must be an integer"),
        ('{"type": "t", "schemaVersion": 2}', "unsupported schemaVersion 2"),
        ('{"schemaVersion": 1}', "no message type"),
        ('{"schemaVersion": 1, "type": ""}', "no message type"),
    ],
)
def test_decode_message_rejects_with_a_clear_reason(raw: bytes | str, reason: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        decode_message(raw)
    assert reason in info.value.reason


def test_decode_message_accepts_bytes_and_str() -> None:
    text = '{"type": "risk.incident", "schemaVersion": 1, "userId": "u"}'
    assert decode_message(text) == decode_message(text.encode()) == decode_message(bytearray(text.encode()))
