"""Use case: the Graph webhook. Verify, persist to the queue, answer fast.

Graph wants 2xx within 3 s (or retries, and throttles a slow endpoint), and the 10 s validation handshake.
So the webhook never calls Graph: it checks the request, turns each verified notification into one queue
message and answers 202. Only when nothing could be persisted does it answer 503, so Graph retries.

Responses never reflect input, except the validation token, as text/plain, when it is well formed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.domain.messages import LifecycleEvent, UserChanged
from shared.domain.notifications import (
    MAX_BODY_BYTES,
    ChangeNotification,
    LifecycleNotification,
    MalformedNotification,
    message_id,
    parse_notifications,
    valid_validation_token,
    verify,
)
from shared.ports.publisher import MessagePublisher, OutgoingMessage, QueueError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    method: str
    params: Mapping[str, str]
    """Query parameters, already URL-decoded (as Azure Functions gives them)."""
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookReply:
    status: int
    body: str = ""
    mimetype: str = "text/plain"


@dataclass(frozen=True, slots=True)
class WebhookDeps:
    publisher: MessagePublisher
    queue: str
    client_state: str
    subscription_ids: Callable[[], Awaitable[frozenset[str]]]
    """Our live subscription ids (from state): a notification for any other id is not ours."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def lifecycle_message(item: LifecycleNotification, correlation_id: str) -> OutgoingMessage:
    return OutgoingMessage.of(
        LifecycleEvent(item.subscription_id, item.lifecycle_event),
        message_id=message_id(item, correlation_id),
        correlation_id=correlation_id,
    )


async def handle_graph_webhook(request: WebhookRequest, deps: WebhookDeps) -> WebhookReply:
    token = request.params.get("validationToken")
    if token is not None:
        if valid_validation_token(token):
            log.info("graph webhook: validation handshake answered")
            return WebhookReply(200, token, "text/plain")
        log.warning("graph webhook: refused a malformed validation token (%d chars)", len(token))
        return WebhookReply(400, "invalid validation token")

    if request.method.upper() != "POST":
        return WebhookReply(405, "method not allowed")
    if len(request.body) > MAX_BODY_BYTES:
        return WebhookReply(413, "payload too large")
    content_type = _header(request.headers, "content-type").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return WebhookReply(415, "expected application/json")
    try:
        items = parse_notifications(request.body)
    except MalformedNotification as exc:
        log.warning("graph webhook: malformed notification payload dropped: %s", exc)
        return WebhookReply(400, "malformed notification payload")

    verified = verify(items, deps.client_state, await deps.subscription_ids())
    for item, reason in verified.dropped:
        # The subscription id is logged (ours or an attacker's guess); the clientState never is.
        log.warning("graph webhook: notification for subscription %s dropped: %s", item.subscription_id, reason)
    if not verified.accepted:
        return WebhookReply(403, "no verifiable notification")

    correlation_id = str(uuid.uuid4())
    messages: list[OutgoingMessage] = []
    for item in verified.accepted:
        if isinstance(item, ChangeNotification):
            messages.append(
                OutgoingMessage.of(
                    UserChanged(
                        item.user_id,
                        "notification",
                        {"changeType": item.change_type, "subscriptionId": item.subscription_id},
                    ),
                    message_id=message_id(item, f"{correlation_id}:{len(messages)}"),
                    correlation_id=correlation_id,
                )
            )
        else:
            assert isinstance(item, LifecycleNotification)
            messages.append(lifecycle_message(item, correlation_id))
    try:
        await deps.publisher.publish_many(deps.queue, messages)
    except QueueError as exc:
        log.error("graph webhook: could not enqueue %d notification(s), Graph will retry: %s", len(messages), exc)
        return WebhookReply(503, "temporarily unavailable")
    log.info(
        "graph webhook: %d notification(s) enqueued, %d dropped (correlation %s)",
        len(messages),
        len(verified.dropped),
        correlation_id,
    )
    return WebhookReply(202)
