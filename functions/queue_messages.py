"""The one path every Service Bus trigger takes: observe, parse into a typed message, dispatch.

Success completes the message; an exception abandons it, so Service Bus redelivers it and, after the queue's
maxDeliveryCount, dead-letters it. A malformed body is logged with its reason before it fails.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.domain.messages import MalformedMessage
from shared.observability import observed_message
from shared.services.dispatch import dispatch, receive

log = logging.getLogger(__name__)


async def handle_queue_message(queue: str, msg: func.ServiceBusMessage) -> None:
    with observed_message(queue, msg) as correlation_id:
        try:
            message = receive(queue, msg.get_body())
        except MalformedMessage as exc:
            log.error("message %s is malformed and will be dead-lettered: %s", msg.message_id, exc.reason)
            raise
        log.info("%s", await dispatch(message, AppServices.current(), correlation_id))
