"""Timer triggers: the nightly stale-guest sweep, and the resume timer that continues a sweep cut off (flow 4;
the rules are in shared.domain.stale, the run's journal in shared/services/stale/journal.py).

The schedules come from app settings (STALE_SWEEP_SCHEDULE, STALE_RESUME_SCHEDULE) so operators tune the cadence
without a redeploy. An invocation works for at most STALE_SWEEP_SLICE_MINUTES (under host.json's
functionTimeout) and saves the run; the resume timer continues it, and also continues a run whose invocation
timed out, was recycled or killed, once its lease (STALE_SWEEP_LEASE_SECONDS) has run out. A tick with no
unfinished run costs one state read per mode.

run_on_startup stays off: a deployment, a restart or a scale-out would otherwise start an extra sweep at an
arbitrary hour (several at once on several instances) and move guests through their grace periods off-schedule;
the ledger would keep the actions single, but sponsors expect the review at its set time.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.domain.stale_plan import StalePlan
from shared.services.stale import resume_stale_sweeps, sweep_stale_guests

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _log(plan: StalePlan) -> None:
    level = logging.WARNING if plan.status in ("aborted", "capped", "incomplete", "abandoned") else logging.INFO
    log.log(level, "stale sweep %s: %s %s %s", plan.run_id, plan.status, plan.message, plan.reports)


@bp.timer_trigger(arg_name="timer", schedule="%STALE_SWEEP_SCHEDULE%", run_on_startup=False)
async def stale_sweep(timer: func.TimerRequest) -> None:
    _log(await sweep_stale_guests(AppServices.current().stale()))


@bp.timer_trigger(arg_name="timer", schedule="%STALE_RESUME_SCHEDULE%", run_on_startup=False)
async def stale_sweep_resume(timer: func.TimerRequest) -> None:
    for plan in await resume_stale_sweeps(AppServices.current().stale()):
        _log(plan)
