"""Timer trigger: the dead-letter check (docs/operations.md, "Dead letters"; the rules are in
shared.services.deadletters).

Counts each queue's dead letters into the state record the dashboard's overview reads (the overview never talks
to Service Bus) and logs a WARNING naming every queue that has some, with the count and the reasons (never a
body). Read-only: it peeks, nothing is received or locked. The schedule comes from DEADLETTER_CHECK_SCHEDULE.
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.services.deadletters import check_dead_letters

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%DEADLETTER_CHECK_SCHEDULE%", run_on_startup=False)
async def dead_letter_check(timer: func.TimerRequest) -> None:
    deps = AppServices.current().dead_letters()
    if deps is None:
        log.info("dead-letter check: Service Bus is not configured")
        return
    await check_dead_letters(deps)
