"""The dashboard's dead-letters page and its "resubmit dead letters" action (shared.services.dashboard routes
here; the counts and the Service Bus work are shared.services.deadletters').

The page peeks Service Bus live (the one dashboard page that does) and saves nothing: a GET changes nothing. The
action sends every dead letter of one of guestwarden's queues back (RESUBMIT_CAP at most), never
an arbitrary queue named in a form; it is audited with the operator as actor.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.dashboard import Principal, Refused
from shared.domain.deadletters import RESUBMIT_CAP
from shared.ports.publisher import QueueError
from shared.services.audit import Auditor
from shared.services.deadletters import DeadLetterDeps, list_dead_letters, resubmit_dead_letters

log = logging.getLogger(__name__)

ACTION = "resubmit-deadletters"
AUDIT_ACTION = "dashboard-resubmit-deadletters"
NOT_CONFIGURED = "dead letters need Service Bus (SERVICEBUS_CONNECTION or its namespace): not configured here"


async def dead_letters_page(deps: DeadLetterDeps | None) -> dict[str, Any]:
    """The page's context: each queue's dead letters (live) or why there are none to show."""
    if deps is None:
        return {"configured": False, "queues": [], "not_configured": NOT_CONFIGURED, "cap": RESUBMIT_CAP}
    return {"configured": True, "cap": RESUBMIT_CAP, **await list_dead_letters(deps)}


def check_target(deps: DeadLetterDeps | None, queue: str) -> DeadLetterDeps:
    """The action's target is one of guestwarden's queues (404 otherwise); 409 without Service Bus."""
    if deps is None:
        raise Refused(409, NOT_CONFIGURED)
    if queue not in deps.queues:
        raise Refused(404, "no such queue: only guestwarden's queues can be resubmitted")
    return deps


async def resubmit(deps: DeadLetterDeps | None, queue: str, principal: Principal, auditor: Auditor) -> dict[str, Any]:
    """Send `queue`'s dead letters back, audited as `dashboard-resubmit-deadletters` by the operator; the done
    page's context."""
    wired = check_target(deps, queue)
    try:
        sent = await resubmit_dead_letters(wired, queue)
    except QueueError as exc:
        await auditor.record(AUDIT_ACTION, queue, outcome="failed", reason=exc.reason[:300])
        raise Refused(502, f"Service Bus refused the resubmit of {queue}: {exc.reason[:300]}") from None
    numbers = [d.sequence_number for d in sent]
    evidence = {"queue": queue, "resubmitted": len(sent), "sequenceNumbers": numbers}
    await auditor.record(AUDIT_ACTION, queue, outcome="done", evidence=evidence)
    log.info("dashboard: %s resubmitted %d dead letter(s) of %s", principal.name, len(sent), queue)
    return {"resubmitted": sent, "cap": RESUBMIT_CAP}
