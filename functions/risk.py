"""Risk-blocked guests: the sign-in poller (timer) and the incident processor (Service Bus trigger).

RISK_POLL_SCHEDULE comes from app settings so operators tune the cadence without a redeploy. run_on_startup
stays off: every scale-out instance would poll at once on a cold start, and the overlapping window catches up.
The daily digest (RISK_DIGEST_SCHEDULE) is optional (RISK_DIGEST_ENABLED); its timer is always registered, so
turning it on is a setting change, not a redeploy; run_on_startup is off for it too (a restart must not mail
the admins), and it sends at most one digest per UTC day.
The processor's failures abandon the message: Service Bus redelivers it and, after the queue's
maxDeliveryCount, dead-letters it (a ticket that cannot be delivered is never silently dropped).
"""

import logging

import azure.functions as func

from functions.queue_messages import handle_queue_message
from shared.bootstrap import AppServices
from shared.domain.messages import RISK_INCIDENTS_QUEUE
from shared.services.risk_detection import detect_risk_incidents
from shared.services.risk_digest import send_risk_digest

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%RISK_POLL_SCHEDULE%", run_on_startup=False)
async def risk_poller(timer: func.TimerRequest) -> None:
    outcome = await detect_risk_incidents(AppServices.current().risk_detection())
    log.info(
        "risk poller: %d sign-ins, %d new incident(s), ignored %s",
        outcome.sign_ins,
        len(outcome.new_incidents),
        dict(outcome.ignored),
    )


@bp.timer_trigger(arg_name="timer", schedule="%RISK_DIGEST_SCHEDULE%", run_on_startup=False)
async def risk_digest(timer: func.TimerRequest) -> None:
    services = AppServices.current()
    if not services.settings.risk.digest_enabled:
        log.info("risk digest: RISK_DIGEST_ENABLED is false; nothing to do")
        return
    outcome = await send_risk_digest(services.risk_digest())
    log.info("risk digest: %s (%d new, %d older still open)", outcome.status, outcome.recent, outcome.still_open)


@bp.service_bus_queue_trigger(arg_name="msg", queue_name=RISK_INCIDENTS_QUEUE, connection="SERVICEBUS_CONNECTION")
async def process_risk_incident(msg: func.ServiceBusMessage) -> None:
    await handle_queue_message(RISK_INCIDENTS_QUEUE, msg)
