"""The Graph webhook: handshake, verification, what is enqueued, and every bad-input answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.notifications import client_state_matches, message_id, parse_notifications
from shared.services.webhook import WebhookDeps, WebhookReply, WebhookRequest, handle_graph_webhook
from tests.fakes.publisher import InMemoryPublisher

SECRET = "client-state-secret-0123456789"
SUB = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
QUEUE = "guest-changes"
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def change(user: str = "u-1", seq: int | None = 7, client_state: str | None = SECRET, sub: str = SUB) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": sub,
        "subscriptionExpirationDateTime": "2026-12-20T00:00:00Z",
        "changeType": "updated",
        "resource": f"Users/{user}",
        "tenantId": "tenant",
        "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": f"Users/{user}", "id": user},
    }
    if seq is not None:
        item["resourceData"]["sequenceNumber"] = seq
    if client_state is not None:
        item["clientState"] = client_state
    return item


def body(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


async def call(
    publisher: InMemoryPublisher,
    raw: bytes = b"",
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> WebhookReply:
    async def ids() -> frozenset[str]:
        return frozenset({SUB})

    deps = WebhookDeps(publisher, QUEUE, SECRET, ids)
    return await handle_graph_webhook(
        WebhookRequest(method, params or {}, JSON_HEADERS if headers is None else headers, raw), deps
    )


async def test_validation_handshake_echoes_the_decoded_token_as_plain_text() -> None:
    publisher = InMemoryPublisher()
    token = "Validation: Testing client application reachability for subscription Request-Id: 1b2c"
    reply = await call(publisher, params={"validationToken": token}, headers={"Content-Type": "text/plain"})
    assert (reply.status, reply.body, reply.mimetype) == (200, token, "text/plain")
    assert publisher.messages(QUEUE) == []


@pytest.mark.parametrize("token", ["", "x" * 1025, "<script>alert(1)</script>\n", "tab\there"])
async def test_malformed_validation_tokens_are_refused_without_echo(token: str) -> None:
    reply = await call(InMemoryPublisher(), params={"validationToken": token})
    assert reply.status == 400
    assert token not in reply.body or token == ""


async def test_change_notification_is_enqueued_and_answered_202() -> None:
    publisher = InMemoryPublisher()
    reply = await call(publisher, body(change("u-1"), change("u-2", seq=3)))
    assert reply.status == 202
    messages = publisher.messages(QUEUE)
    assert [m.body["userId"] for m in messages] == ["u-1", "u-2"]
    assert messages[0].message_id == f"n:{SUB}:u-1:7"
    assert messages[0].type == "user-changed"
    assert messages[0].body["source"] == "notification"


async def test_duplicate_deliveries_collapse_by_message_id() -> None:
    publisher = InMemoryPublisher()
    for _ in range(3):
        assert (await call(publisher, body(change("u-1")))).status == 202
    assert len(publisher.messages(QUEUE)) == 1


async def test_wrong_or_missing_client_state_is_never_enqueued() -> None:
    publisher = InMemoryPublisher()
    reply = await call(publisher, body(change(client_state="guess"), change(client_state=None)))
    assert reply.status == 403
    assert SECRET not in reply.body and "guess" not in reply.body
    assert publisher.messages(QUEUE) == []


async def test_unknown_subscription_is_dropped_but_ours_in_the_same_post_is_kept() -> None:
    publisher = InMemoryPublisher()
    reply = await call(publisher, body(change("u-9", sub="00000000-0000-0000-0000-000000000000"), change("u-1")))
    assert reply.status == 202
    assert [m.body["userId"] for m in publisher.messages(QUEUE)] == ["u-1"]


@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        (b"{not json", JSON_HEADERS, 400),
        (b'{"value": "nope"}', JSON_HEADERS, 400),
        (b'{"value": []}', JSON_HEADERS, 400),
        (b'{"value": [{"subscriptionId": 5}]}', JSON_HEADERS, 400),
        (b"\xff\xfe", JSON_HEADERS, 400),
        (b"[" * 100000 + b"]" * 100000, JSON_HEADERS, 400),
        (body(change()), {"Content-Type": "text/plain"}, 415),
        (body(change()), {}, 415),
        (b"x" * (1_048_576 + 1), JSON_HEADERS, 413),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_nothing_is_enqueued(
    raw: bytes, headers: dict[str, str], status: int
) -> None:
    publisher = InMemoryPublisher()
    reply = await call(publisher, raw, headers=headers)
    assert reply.status == status
    assert publisher.messages(QUEUE) == []


async def test_queue_down_answers_503_so_graph_retries() -> None:
    publisher = InMemoryPublisher(fail_queues={QUEUE: "broker unreachable"})
    reply = await call(publisher, body(change()))
    assert reply.status == 503
    assert "broker" not in reply.body


async def test_lifecycle_events_are_enqueued_for_the_processor() -> None:
    publisher = InMemoryPublisher()
    event = {
        "subscriptionId": SUB,
        "subscriptionExpirationDateTime": "2026-12-20T00:00:00Z",
        "tenantId": "tenant",
        "clientState": SECRET,
        "lifecycleEvent": "reauthorizationRequired",
    }
    assert (await call(publisher, body(event))).status == 202
    [message] = publisher.messages(QUEUE)
    assert message.type == "subscription-lifecycle"
    assert message.body == {"subscriptionId": SUB, "lifecycleEvent": "reauthorizationRequired"}


def test_client_state_comparison() -> None:
    assert client_state_matches(SECRET, SECRET)
    assert not client_state_matches(SECRET[:-1], SECRET)
    assert not client_state_matches(None, SECRET)


def test_notification_without_sequence_number_gets_a_unique_message_id() -> None:
    [item] = parse_notifications(body(change(seq=None)))
    assert message_id(item, "a") != message_id(item, "b")
