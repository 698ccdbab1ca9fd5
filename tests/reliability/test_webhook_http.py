"""The webhook as an attacker meets it: over HTTP, on the real function_app in the local host. Without the
function key nothing reaches the code; with it, hostile bodies, headers and query strings get a 4xx, never a
500, and nothing is enqueued; the validation token comes back only as text/plain and only when well formed."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.domain.messages import GUEST_CHANGES_QUEUE
from tests.reliability.fault_world import CLIENT_STATE, KEY, FaultWorld

pytestmark = pytest.mark.timeout(180)

ROUTE = "/api/graph/notifications"
HOSTILE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b'{"value": null}',
    b'{"value": [null, 1, "x"]}',
    b"{" * 5000,
    b"[" * 100_000,
    json.dumps({"value": [{"clientState": CLIENT_STATE}]}).encode(),
    json.dumps({"value": [{"subscriptionId": "x" * 10_000, "clientState": CLIENT_STATE}]}).encode(),
    json.dumps({"value": [{"resourceData": {"id": "<script>"}, "clientState": CLIENT_STATE}]}).encode(),
    "\ud800".encode("utf-8", "surrogatepass"),
    b"\x00\xff" * 100,
    b'{"value": [' + b'{"a": 1},' * 5000 + b'{"a": 1}]}',
    b" " * (1_048_576 + 1),
]
HOSTILE_QUERIES = [
    {"validationToken": "<script>alert(1)</script>\r\nX: y"},
    {"validationToken": ""},
    {"validationToken": "x" * 5000},
    {"validationToken": "caf\u00e9"},
    {"validationtoken": "lower-case-name"},
]


async def test_the_webhook_answers_hostile_requests_without_a_500_and_enqueues_nothing(
    fault_world: FaultWorld,
) -> None:
    world = fault_world
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=world.live.http_url, timeout=60) as client:
        for body in HOSTILE_BODIES[:3]:  # without the key (or with a wrong one) nothing reaches the function
            for params in ({}, {"code": "not-the-key"}, {"code": KEY[:-1]}):
                response = await client.post(ROUTE, params=params, content=body)
                assert response.status_code == 401, (params, response.status_code)
        for body in HOSTILE_BODIES:
            for content_type in ("application/json", "text/plain", "application/json; charset=utf-16"):
                response = await client.post(
                    ROUTE, params={"code": KEY}, content=body, headers={"Content-Type": content_type}
                )
                statuses.append(response.status_code)
                assert 400 <= response.status_code < 500, (body[:40], content_type, response.status_code)
                assert CLIENT_STATE not in response.text
        for params in HOSTILE_QUERIES:
            response = await client.post(ROUTE, params={"code": KEY, **params}, content=b"")
            statuses.append(response.status_code)
            assert 400 <= response.status_code < 500, (params, response.status_code)
            assert "<script>" not in response.text
        token = "Validation: Testing client application reachability for subscription Request-Id: 1-2-3"
        handshake = await client.post(ROUTE, params={"code": KEY, "validationToken": token})
    assert handshake.status_code == 200 and handshake.text == token
    assert handshake.headers["content-type"].startswith("text/plain")
    assert world.broker.stats[GUEST_CHANGES_QUEUE].get("sent", 0) == 0
    assert world.broker.queue_counts(GUEST_CHANGES_QUEUE) == {
        "available": 0,
        "locked": 0,
        "scheduled": 0,
        "dead_lettered": 0,
    }
    assert len(statuses) == len(HOSTILE_BODIES) * 3 + len(HOSTILE_QUERIES)
