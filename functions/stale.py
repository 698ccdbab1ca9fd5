"""Timer trigger: the nightly stale-guest sweep (flow 4; the rules are in shared.domain.stale).

The schedule comes from the STALE_SWEEP_SCHEDULE app setting so operators tune the cadence without a redeploy.
run_on_startup stays off: a deployment, a restart or a scale-out would otherwise start an extra sweep at an
arbitrary hour (several at once on several instances) and move guests through their grace periods off-schedule;
the ledger would keep the actions single, but sponsors expect the review at its set time.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.services.stale import sweep_stale_guests

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%STALE_SWEEP_SCHEDULE%", run_on_startup=False)
async def stale_sweep(timer: func.TimerRequest) -> None:
    plan = await sweep_stale_guests(AppServices.current().stale())
    level = logging.WARNING if plan.status in ("aborted", "capped", "incomplete") else logging.INFO
    log.log(level, "stale sweep %s: %s %s %s", plan.run_id, plan.status, plan.message, plan.reports)
