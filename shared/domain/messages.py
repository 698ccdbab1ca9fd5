"""The queue messages guestwarden sends itself: one class per message type, each parsing and writing its body.

Every body on the wire is a JSON object with `"type"` and `"schemaVersion"` next to the message's own fields.
`parse_message` checks the envelope and hands back the typed message, so a queue-triggered function can
dead-letter input it does not understand (MalformedMessage says exactly what is wrong) instead of crashing on it.
`schemaVersion` is the envelope's version: a change that an older reader would misread bumps it, and readers
refuse versions they do not know (the message is dead-lettered, never half-read).

Pure: no I/O, no SDK. The publisher port (shared/ports/publisher.py) wraps a message into an `OutgoingMessage`
with its delivery details (message id for duplicate detection, schedule, correlation id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from shared.domain.risk import is_tenant_id

__all__ = [
    "GUEST_CHANGES_QUEUE",
    "RISK_INCIDENTS_QUEUE",
    "SCHEMA_VERSION",
    "LifecycleEvent",
    "MalformedMessage",
    "Message",
    "RiskIncident",
    "UserChanged",
    "decode_message",
    "parse_message",
]

SCHEMA_VERSION = 1

GUEST_CHANGES_QUEUE = "guest-changes"
"""Service Bus queue of user changes (notifications, delta, reschedules) and subscription lifecycle events.
A constant, not a setting: the trigger binding, the publisher and infra must agree on it."""
RISK_INCIDENTS_QUEUE = "risk-incidents"
"""Service Bus queue of risk-blocked guest incidents (flows 2/3: guest notice + home-tenant ticket). A constant
for the same reason as GUEST_CHANGES_QUEUE."""

RESYNC_EVENTS = frozenset({"missed", "subscriptionRemoved"})
"""Lifecycle events after which notifications were (or will be) lost: only a delta query catches up."""


class MalformedMessage(ValueError):
    """A received body is not a message this app understands; `reason` is fit for a dead-letter reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _text(payload: Mapping[str, Any], name: str, what: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"{what} without {name}")
    return value


@dataclass(frozen=True, slots=True)
class UserChanged:
    """A user may need licensing: from a change notification, the delta backstop or a no-seat retry."""

    TYPE: ClassVar[str] = "user-changed"
    QUEUE: ClassVar[str] = GUEST_CHANGES_QUEUE

    user_id: str
    source: str
    """Where it came from: "notification", "delta" or "no-seat-retry"."""
    details: Mapping[str, str] = field(default_factory=dict)
    """Evidence kept with the message (a notification's changeType and subscriptionId)."""

    def to_body(self) -> dict[str, Any]:
        return {**self.details, "userId": self.user_id, "source": self.source}

    @classmethod
    def from_body(cls, payload: Mapping[str, Any]) -> UserChanged:
        user_id = _text(payload, "userId", cls.TYPE)
        source = payload.get("source")
        details = {
            key: value
            for key, value in payload.items()
            if key not in ("userId", "source", "type", "schemaVersion") and isinstance(value, str)
        }
        return cls(user_id, source if isinstance(source, str) else "", details)


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A Graph lifecycle notification for one of our subscriptions (reauthorizationRequired, missed, ...)."""

    TYPE: ClassVar[str] = "subscription-lifecycle"
    QUEUE: ClassVar[str] = GUEST_CHANGES_QUEUE

    subscription_id: str
    lifecycle_event: str

    @property
    def needs_resync(self) -> bool:
        """Notifications were lost (missed) or will be (subscription removed): run the delta backstop."""
        return self.lifecycle_event in RESYNC_EVENTS

    def to_body(self) -> dict[str, Any]:
        return {"subscriptionId": self.subscription_id, "lifecycleEvent": self.lifecycle_event}

    @classmethod
    def from_body(cls, payload: Mapping[str, Any]) -> LifecycleEvent:
        return cls(_text(payload, "subscriptionId", cls.TYPE), _text(payload, "lifecycleEvent", cls.TYPE))


@dataclass(frozen=True, slots=True)
class RiskIncident:
    """A guest's sign-in was blocked by risk at its home tenant: notify the guest, open a ticket at home."""

    TYPE: ClassVar[str] = "risk-incident"
    QUEUE: ClassVar[str] = RISK_INCIDENTS_QUEUE

    incident_id: str
    user_id: str
    home_tenant_id: str
    started: str
    """ISO 8601, as detected."""
    sign_in: Mapping[str, Any]
    """What the notice and the ticket may use of the sign-in (no IP address, location or device)."""
    cause: str = ""

    def to_body(self) -> dict[str, Any]:
        return {
            "incidentId": self.incident_id,
            "userId": self.user_id,
            "homeTenantId": self.home_tenant_id,
            "cause": self.cause,
            "started": self.started,
            "signIn": dict(self.sign_in),
        }

    @classmethod
    def from_body(cls, payload: Mapping[str, Any]) -> RiskIncident:
        names = ("incidentId", "userId", "homeTenantId", "started")
        bad = sorted(name for name in names if not isinstance(payload.get(name), str) or not payload.get(name))
        if bad or not isinstance(payload.get("signIn"), dict):
            raise MalformedMessage(f"risk incident without {', '.join(bad) or 'signIn'}")
        if not is_tenant_id(payload["homeTenantId"]):
            raise MalformedMessage("risk incident: homeTenantId is not a tenant id")
        cause = payload.get("cause")
        return cls(
            payload["incidentId"],
            payload["userId"],
            payload["homeTenantId"],
            payload["started"],
            payload["signIn"],
            cause if isinstance(cause, str) else "",
        )


Message: TypeAlias = UserChanged | LifecycleEvent | RiskIncident

MESSAGE_TYPES: dict[str, type[UserChanged] | type[LifecycleEvent] | type[RiskIncident]] = {
    kind.TYPE: kind for kind in (UserChanged, LifecycleEvent, RiskIncident)
}


def decode_message(body: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a received body and check its envelope (JSON object, known schemaVersion, a type)."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"body is not UTF-8: {exc}") from exc
    else:
        text = body
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedMessage(f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedMessage(f"body must be a JSON object, got {type(payload).__name__}")
    version = payload.get("schemaVersion")
    if version is None:
        raise MalformedMessage("body has no schemaVersion")
    if isinstance(version, bool) or not isinstance(version, int):
        raise MalformedMessage(f"schemaVersion must be an integer, got {version!r}")
    if version != SCHEMA_VERSION:
        raise MalformedMessage(f"unsupported schemaVersion {version} (this app reads {SCHEMA_VERSION})")
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedMessage("body has no message type ('type' must be a non-empty string)")
    return payload


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


def parse_message(body: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Message:
    """The typed message of a received body (or of an already decoded envelope)."""
    payload = body if isinstance(body, Mapping) else decode_message(body)
    kind = payload.get("type")
    message_type = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if message_type is None:
        raise MalformedMessage(f"unknown message type {kind!r}")
    return message_type.from_body(payload)
