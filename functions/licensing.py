"""Service Bus trigger: the guest-changes queue (user changes from notifications and delta, lifecycle events).

Each message goes to its use case through shared.services.dispatch (licensing, subscription lifecycle).
"""

import azure.functions as func

from functions.queue_messages import handle_queue_message
from shared.domain.messages import GUEST_CHANGES_QUEUE

bp = func.Blueprint()


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=GUEST_CHANGES_QUEUE, connection="SERVICEBUS_CONNECTION")
async def process_guest_change(msg: func.ServiceBusMessage) -> None:
    await handle_queue_message(GUEST_CHANGES_QUEUE, msg)
