"""Graph change notifications as guestwarden accepts them. Pure: parsing, verification, message ids.

Everything here is attacker-reachable (the webhook is on the internet): it parses defensively, verifies the
clientState in constant time and the subscription id against ours, and never echoes input back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 1_048_576
"""Graph batches notifications, but a /users notification is ~600 bytes: 1 MiB is far above any real POST."""
MAX_NOTIFICATIONS = 1000
MAX_VALIDATION_TOKEN = 1024
_TOKEN = re.compile(r"[\x20-\x7e]+")
"""Printable ASCII only: Graph's tokens are; anything else is not from Graph."""
_USER_RESOURCE = re.compile(r"^users/([0-9A-Za-z-]{1,64})$", re.IGNORECASE)
_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


class MalformedNotification(ValueError):
    """The body is not a Graph notification payload. The message is for logs, never for the response."""


@dataclass(frozen=True, slots=True)
class ChangeNotification:
    subscription_id: str
    client_state: str | None
    change_type: str
    user_id: str
    sequence_number: int | None
    tenant_id: str | None


@dataclass(frozen=True, slots=True)
class LifecycleNotification:
    subscription_id: str
    client_state: str | None
    lifecycle_event: str
    expiration: str | None
    tenant_id: str | None


Notification = ChangeNotification | LifecycleNotification


def valid_validation_token(token: str) -> bool:
    """A handshake token we are willing to echo: bounded, printable, nothing that could become markup."""
    return 0 < len(token) <= MAX_VALIDATION_TOKEN and bool(_TOKEN.fullmatch(token))


def parse_notifications(body: bytes) -> list[Notification]:
    """Parse a POST body; raises MalformedNotification for anything that is not Graph's shape."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedNotification(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedNotification(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("value"), list):
        raise MalformedNotification("body is not an object with a 'value' array")
    items = payload["value"]
    if not items or len(items) > MAX_NOTIFICATIONS:
        raise MalformedNotification(f"'value' has {len(items)} items (expected 1-{MAX_NOTIFICATIONS})")
    return [_parse_item(item, index) for index, item in enumerate(items)]


def _text(item: dict[str, Any], key: str, index: int, *, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 256:
        raise MalformedNotification(f"item {index}: '{key}' missing or not a short string")
    return value


def _parse_item(item: object, index: int) -> Notification:
    if not isinstance(item, dict):
        raise MalformedNotification(f"item {index} is not an object")
    subscription_id = _text(item, "subscriptionId", index)
    assert subscription_id is not None
    client_state = _text(item, "clientState", index, required=False)
    tenant_id = _text(item, "tenantId", index, required=False)
    if "lifecycleEvent" in item:
        event = _text(item, "lifecycleEvent", index)
        assert event is not None
        expiration = _text(item, "subscriptionExpirationDateTime", index, required=False)
        return LifecycleNotification(subscription_id, client_state, event, expiration, tenant_id)
    change_type = _text(item, "changeType", index)
    assert change_type is not None
    data = item.get("resourceData")
    user_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(user_id, str):
        resource = _text(item, "resource", index) or ""
        match = _USER_RESOURCE.fullmatch(resource)
        user_id = match.group(1) if match else None
    if not isinstance(user_id, str) or not _ID.fullmatch(user_id):
        raise MalformedNotification(f"item {index}: no user id in resourceData or resource")
    sequence = data.get("sequenceNumber") if isinstance(data, dict) else None
    if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int)):
        raise MalformedNotification(f"item {index}: sequenceNumber is not an integer")
    return ChangeNotification(subscription_id, client_state, change_type, user_id, sequence, tenant_id)


def client_state_matches(received: str | None, expected: str) -> bool:
    """Constant-time comparison: timing must not tell an attacker how much of a guess was right."""
    return received is not None and hmac.compare_digest(received.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Verified:
    accepted: list[Notification]
    dropped: list[tuple[Notification, str]]


def verify(items: list[Notification], client_state: str, subscription_ids: Collection[str]) -> Verified:
    """Keep what carries our clientState and one of our subscription ids; say why the rest is dropped."""
    accepted: list[Notification] = []
    dropped: list[tuple[Notification, str]] = []
    for item in items:
        if not client_state_matches(item.client_state, client_state):
            dropped.append((item, "clientState does not match"))
        elif item.subscription_id not in subscription_ids:
            dropped.append((item, "unknown subscription id"))
        else:
            accepted.append(item)
    return Verified(accepted, dropped)


def message_id(item: Notification, fallback: str) -> str:
    """Deterministic per notification, so Graph's duplicate deliveries collapse in the queue.

    Without a sequenceNumber a duplicate cannot be told from a second change of the same user, so `fallback`
    (unique per delivery) is used: two messages then, and the idempotency ledger makes the second a no-op.
    Collapsing them instead could lose the change that matters (created, then accepted a minute later).
    """
    if isinstance(item, ChangeNotification):
        if item.sequence_number is not None:
            return f"n:{item.subscription_id}:{item.user_id}:{item.sequence_number}"
        return f"n:{item.subscription_id}:{item.user_id}:{fallback}"[:128]
    digest = hashlib.sha256(f"{item.lifecycle_event}|{item.expiration}".encode()).hexdigest()[:16]
    return f"l:{item.subscription_id}:{digest}"
