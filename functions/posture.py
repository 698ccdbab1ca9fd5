"""Timer trigger: the nightly guest posture checks (docs/posture.md; the rules are in shared.domain.posture).

The result is kept in the state store (shared.services.posture, `latest`), where the stale sweep's HTML report
(and `guestwarden posture --saved`) read it. Read-only: it changes nothing in the tenant. The schedule comes from
POSTURE_SCHEDULE; run_on_startup stays off (a restart must not add Graph reads at an arbitrary hour).
"""

import logging

import azure.functions as func

from shared.bootstrap import AppServices
from shared.domain.posture import Status
from shared.services.posture import run_posture, save_posture

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%POSTURE_SCHEDULE%", run_on_startup=False)
async def posture_checks(timer: func.TimerRequest) -> None:
    services = AppServices.current()
    report = await run_posture(services.posture())
    await save_posture(services.state, report)
    counts = report.counts()
    level = logging.WARNING if report.status in (Status.FAIL, Status.WARN) else logging.INFO
    log.log(level, "posture %s: %s", report.status.value, ", ".join(f"{n} {s}" for s, n in counts.items() if n))
