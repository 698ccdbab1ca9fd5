"""The dispatcher: one place that maps a received queue message to its use case.

The Service Bus triggers in functions/ hand every body here. A body that is not a message this app understands,
or a message type that does not belong on the queue it came from, raises MalformedMessage: the trigger lets it
fail, Service Bus redelivers it and finally dead-letters it with the reason logged (never half-processed).
"""

from __future__ import annotations

import logging
from typing import Protocol

from shared.domain.messages import LifecycleEvent, MalformedMessage, Message, RiskIncident, UserChanged, parse_message
from shared.services.conversion import ConversionDeps, review_user_change
from shared.services.delta import DeltaDeps, run_delta_backstop
from shared.services.licensing import LicensingDeps, license_guest
from shared.services.risk_response import ResponseDeps, respond_to_incident
from shared.services.subscriptions import SubscriptionDeps, handle_lifecycle_event

log = logging.getLogger(__name__)


class UseCases(Protocol):
    """What the dispatcher needs from the composition root (shared.bootstrap.AppServices): each flow's deps."""

    def licensing(self) -> LicensingDeps: ...
    def subscriptions(self) -> SubscriptionDeps: ...
    def delta(self) -> DeltaDeps: ...
    def risk_response(self) -> ResponseDeps: ...
    def conversion(self) -> ConversionDeps: ...


def receive(queue: str, body: bytes | str) -> Message:
    """The typed message of a body received on `queue`; MalformedMessage when it is not one of that queue's."""
    message = parse_message(body)
    if queue != message.QUEUE:
        raise MalformedMessage(f"message type {message.TYPE!r} does not belong on {queue}")
    return message


async def dispatch(message: Message, use_cases: UseCases, correlation_id: str = "") -> str:
    """Run the use case of one message; returns a one-line summary for the log. Raises to fail the delivery."""
    match message:
        case UserChanged():
            outcome = await license_guest(message.user_id, use_cases.licensing(), correlation_id)
            welcome = f"; welcome mail {outcome.welcome}" if outcome.welcome else ""
            review = await review_user_change(message.user_id, use_cases.conversion(), correlation_id)
            reviewed = f"; {review.status}: {review.detail}" if review.notable else ""
            summary = outcome.reason or ",".join(outcome.actions)
            return f"user {message.user_id}: {outcome.status} {summary}{welcome}{reviewed}"
        case LifecycleEvent():
            result = await handle_lifecycle_event(message, use_cases.subscriptions())
            if message.needs_resync:
                backstop = await run_delta_backstop(use_cases.delta())
                result = f"{result}; delta backstop {backstop.status}: {backstop.enqueued} user(s) enqueued"
            return f"lifecycle event {message.lifecycle_event}: {result}"
        case RiskIncident():
            response = await respond_to_incident(message, use_cases.risk_response(), correlation_id)
            return f"risk incident {message.incident_id}: notice {response.notice}, ticket {response.ticket}"
