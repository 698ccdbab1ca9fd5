"""Service Bus trigger: the guest-changes queue (user changes from notifications and delta, lifecycle events).

Success completes the message; an exception abandons it, so Service Bus redelivers it and, after the queue's
maxDeliveryCount, dead-letters it. The exception (and the message id) is logged with the reason.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.domain.messages import MalformedMessage, decode_message
from shared.observability import observed_message
from shared.services.licensing import USER_CHANGED, license_guest
from shared.services.subscriptions import handle_lifecycle_event
from shared.services.webhook import LIFECYCLE_EVENT
from shared.settings import GUEST_CHANGES_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=GUEST_CHANGES_QUEUE, connection="SERVICEBUS_CONNECTION")
async def process_guest_change(msg: func.ServiceBusMessage) -> None:
    with observed_message(GUEST_CHANGES_QUEUE, msg) as correlation_id:
        await _process_guest_change(msg, correlation_id)


async def _process_guest_change(msg: func.ServiceBusMessage, correlation_id: str) -> None:
    try:
        payload = decode_message(msg.get_body())
    except MalformedMessage as exc:
        log.error("message %s is malformed and will be dead-lettered: %s", msg.message_id, exc.reason)
        raise
    services = AppServices.current()
    kind = payload["type"]
    if kind == USER_CHANGED and isinstance(payload.get("userId"), str):
        outcome = await license_guest(payload["userId"], services.licensing(), correlation_id)
        log.info("user %s: %s %s", payload["userId"], outcome.status, outcome.reason or ",".join(outcome.actions))
    elif kind == LIFECYCLE_EVENT:
        result = await handle_lifecycle_event(
            str(payload.get("subscriptionId")), str(payload.get("lifecycleEvent")), services.subscriptions()
        )
        log.info("lifecycle event %s: %s", payload.get("lifecycleEvent"), result)
        if payload.get("lifecycleEvent") in ("missed", "subscriptionRemoved"):
            from shared.services.delta import run_delta_backstop

            await run_delta_backstop(services.delta())
    else:
        raise MalformedMessage(f"unknown message type {kind!r} or missing userId")
