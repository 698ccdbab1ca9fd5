"""The Graph webhook under generated input: bodies, headers, query strings and methods an attacker can send.

Properties (each over thousands of deterministic Hypothesis cases, counted in the run's summary):
* it never fails (an exception is a 500 from the Functions host) and answers only statuses it documents;
* nothing is enqueued unless the notification carries our clientState AND one of our subscription ids, and
  what is enqueued names exactly those notifications' users;
* the validation token is echoed only when well formed, only as text/plain, and a refused token is not reflected.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.notifications import MAX_VALIDATION_TOKEN
from shared.services.webhook import WebhookDeps, WebhookReply, WebhookRequest, handle_graph_webhook
from tests.fakes.publisher import InMemoryPublisher
from tests.fixtures.hypothesis_profile import count_case
from tests.unit.test_webhook import QUEUE, SECRET, SUB

OTHER_SUB = "00000000-0000-4000-8000-000000000000"
DOCUMENTED = {200, 202, 400, 403, 405, 413, 415}
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]


def run(request: WebhookRequest) -> tuple[WebhookReply, InMemoryPublisher]:
    publisher = InMemoryPublisher()

    async def ids() -> frozenset[str]:
        return frozenset({SUB})

    with asyncio.Runner() as runner:  # the handler is async; one short-lived loop per generated case
        reply = runner.run(handle_graph_webhook(request, WebhookDeps(publisher, QUEUE, SECRET, ids)))
    assert reply.status in DOCUMENTED, reply
    return reply, publisher


def enqueued_users(publisher: InMemoryPublisher) -> list[str]:
    return [str(m.body.get("userId") or m.body.get("subscriptionId")) for m in publisher.messages(QUEUE)]


# -- strategies ---------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
user_ids = st.sampled_from(["u-1", "6f1c2f6e-3e9f-4c41-a6c4-1f4b0d1e2a3b"]) | st.text(max_size=70)
client_states = st.sampled_from([SECRET, SECRET + "x", SECRET[:-1], SECRET.upper(), "", " " + SECRET]) | st.text(
    max_size=40
)
subscriptions = st.sampled_from([SUB, OTHER_SUB, SUB.upper(), ""]) | st.text(max_size=40)


@st.composite
def notification(draw: st.DrawFn) -> dict[str, Any]:
    user = draw(user_ids)
    item: dict[str, Any] = {
        "subscriptionId": draw(subscriptions),
        "changeType": draw(st.sampled_from(["updated", "created", "deleted"]) | st.text(max_size=10)),
        "resource": draw(st.sampled_from([f"Users/{user}", f"users/{user}", f"Groups/{user}"]) | st.text(max_size=30)),
        "resourceData": draw(
            st.fixed_dictionaries({"id": st.just(user)}, optional={"sequenceNumber": st.integers()}) | json_values
        ),
    }
    if draw(st.booleans()):
        item["clientState"] = draw(client_states)
    if draw(st.integers(0, 9)) == 0:
        item["lifecycleEvent"] = draw(st.sampled_from(["reauthorizationRequired", "missed", "subscriptionRemoved"]))
    extra = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2))
    return {**extra, **item} if draw(st.booleans()) else {**item, **extra}


def named_users(item: dict[str, Any]) -> set[str]:
    """Every user id a notification could be read as naming (resourceData.id, or the resource path)."""
    data = item.get("resourceData")
    names = {str(data.get("id"))} if isinstance(data, dict) else set()
    resource = str(item.get("resource") or "")
    if resource.lower().startswith("users/"):
        names.add(resource[len("users/") :])
    return names


def is_ours(item: dict[str, Any]) -> bool:
    return item.get("clientState") == SECRET and item.get("subscriptionId") == SUB


# -- properties ---------------------------------------------------------------------------------------------


@settings(max_examples=1500)
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "post"]) | st.text(max_size=8),
    params=st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=3),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=60), max_size=4),
    body=st.binary(max_size=300),
)
def test_arbitrary_requests_never_fail_and_never_enqueue(
    method: str, params: dict[str, str], headers: dict[str, str], body: bytes
) -> None:
    count_case("webhook: arbitrary method/query/headers/body")
    params = {k: v for k, v in params.items() if k != "validationToken"}
    reply, publisher = run(WebhookRequest(method, params, headers, body))
    assert enqueued_users(publisher) == []  # random bytes never carry our secret and subscription
    assert reply.status != 200


@settings(max_examples=1000)
@given(
    items=st.lists(notification(), max_size=5),
    content_type=st.sampled_from(JSON_TYPES) | st.text(max_size=30),
    wrap=st.sampled_from(["value", "list", "other"]),
)
def test_only_notifications_with_our_secret_and_subscription_are_enqueued(
    items: list[dict[str, Any]], content_type: str, wrap: str
) -> None:
    count_case("webhook: structured notifications (clientState x subscription x shape)")
    payload: Any = {"value": items} if wrap == "value" else items if wrap == "list" else {"values": items}
    reply, publisher = run(WebhookRequest("POST", {}, {"Content-Type": content_type}, json.dumps(payload).encode()))
    users = enqueued_users(publisher)
    ours = [i for i in items if is_ours(i)]
    if not ours:
        assert users == [] and reply.status != 202
    # every message names a user (or subscription) of a notification that carried our secret and subscription
    allowed = {SUB} | {user for item in ours for user in named_users(item)}
    assert set(users) <= allowed
    if reply.status == 202:
        assert users and len(users) <= len(ours)


@settings(max_examples=1500)
@given(
    token=st.text(max_size=MAX_VALIDATION_TOKEN + 20)
    | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=MAX_VALIDATION_TOKEN)
    | st.sampled_from(["<script>alert(1)</script>", "a\r\nSet-Cookie: x=1", "x" * (MAX_VALIDATION_TOKEN + 1)]),
    method=st.sampled_from(["POST", "GET"]),
)
def test_validation_token_is_echoed_only_when_well_formed_and_only_as_text(token: str, method: str) -> None:
    count_case("webhook: validation tokens")
    reply, publisher = run(WebhookRequest(method, {"validationToken": token}, {"Content-Type": "text/plain"}, b""))
    well_formed = 0 < len(token) <= MAX_VALIDATION_TOKEN and all(0x20 <= ord(c) <= 0x7E for c in token)
    assert enqueued_users(publisher) == []
    if well_formed:
        assert (reply.status, reply.body, reply.mimetype) == (200, token, "text/plain")
    else:
        assert reply.status == 400 and reply.mimetype == "text/plain"
        assert token == "" or token not in reply.body
