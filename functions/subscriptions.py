"""Timer triggers: keep the /users subscription alive, and run the users/delta backstop.

Schedules come from app settings (SUBSCRIPTION_SCHEDULE, DELTA_SCHEDULE) so operators tune cadence without a
redeploy. run_on_startup stays off: every scale-out instance would otherwise hit Graph at once on a cold start,
and the schedules are frequent enough to catch up.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.services.delta import run_delta_backstop
from shared.services.subscriptions import ensure_subscription

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%", run_on_startup=False)
async def subscription_keeper(timer: func.TimerRequest) -> None:
    outcome = await ensure_subscription(AppServices.current().subscriptions())
    log.info("subscription keeper: %s %s (expires %s)", outcome.action, outcome.subscription_id, outcome.expires)


@bp.timer_trigger(arg_name="timer", schedule="%DELTA_SCHEDULE%", run_on_startup=False)
async def delta_backstop(timer: func.TimerRequest) -> None:
    outcome = await run_delta_backstop(AppServices.current().delta())
    log.info("delta backstop: %s, %d page(s), %d enqueued", outcome.status, outcome.pages, outcome.enqueued)
