"""Licence reclaim: a disabled guest holds no seat; a guest who comes back gets its licences again.

Taking back happens in the sweep's disable batch (execute.py: `reclaim_requests`, one `assignLicense` with only
removeLicenses for the direct SKUs, one `DELETE .../members/{id}/$ref` for the licensing group), and in a
sponsor's "remove now". What was taken is recorded in the guest's stage memory (`StageMemory.reclaimed`).

Giving back (`give_back`) happens wherever the account is enabled again: the sweep's reactivation, an
operator's restore, a sponsor's "keep" of a disabled guest. A SKU is assigned again only when a seat is free
(`subscribedSkus`: prepaidUnits.enabled - consumedUnits); otherwise the admins (ADMIN_ALERT_RECIPIENTS) are
mailed, the audit log says `no-seat`, and an operator assigns it once seats are bought. Licensing-group
membership is always given back: group-based licensing then assigns the seat or reports its own error.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.domain.directory import OutgoingMail
from shared.domain.stale import Reclaim
from shared.ports.graph import BatchOps, BatchRequest, BatchResult, GraphError, ReturnGraph
from shared.ports.state import AuditLog
from shared.services.audit import Auditor
from shared.services.licensing import Alerting

log = logging.getLogger(__name__)

ACTION = "stale-licence-return"


def reclaim_requests(user_id: str, reclaim: Reclaim) -> list[BatchRequest]:
    """The batch items that take `reclaim` back from a user being disabled."""
    requests = [BatchOps.remove_licenses(user_id, reclaim.sku_ids)] if reclaim.sku_ids else []
    return requests + [BatchOps.remove_member(group, user_id) for group in reclaim.group_ids]


def reclaimed_from(user_id: str, reclaim: Reclaim, results: dict[str, BatchResult]) -> tuple[Reclaim, list[str]]:
    """What the batch took back, and what it could not (with Graph's answer). A licence the user no longer holds
    (400 on assignLicense, 404 on the membership) counts as taken: an earlier attempt took it."""
    taken_skus: tuple[str, ...] = ()
    failed: list[str] = []
    if reclaim.sku_ids:
        result = results[BatchOps.remove_licenses(user_id, reclaim.sku_ids).id]
        if result.ok or (result.status == 400 and "does not have" in str(result.error)):
            taken_skus = reclaim.sku_ids
        else:
            failed.append(f"licences {','.join(reclaim.sku_ids)}: {result.error}")
    taken_groups: list[str] = []
    for group in reclaim.group_ids:
        result = results[BatchOps.remove_member(group, user_id).id]
        if result.ok or result.status == 404:
            taken_groups.append(group)
        else:
            failed.append(f"group {group}: {result.error}")
    return Reclaim(taken_skus, tuple(taken_groups)), failed


@dataclass(frozen=True, slots=True)
class GiveBack:
    returned: Reclaim
    short: tuple[str, ...] = ()
    """SKUs not given back: no free seat."""
    failed: tuple[str, ...] = ()


async def give_back(
    graph: ReturnGraph,
    audit: AuditLog,
    clock: Callable[[], datetime],
    user_id: str,
    reclaimed: Reclaim | None,
    alerting: Alerting,
    *,
    actor: str,
    correlation_id: str = "",
) -> GiveBack | None:
    """Give a returning guest the licences taken from it when it was disabled; None when nothing was taken."""
    if not reclaimed:
        return None
    seats = (
        {sku.sku_id.lower(): sku.free_units for sku in await graph.list_subscribed_skus()} if reclaimed.sku_ids else {}
    )
    given: list[str] = []
    short: list[str] = []
    failed: list[str] = []
    for sku_id in reclaimed.sku_ids:
        if seats.get(sku_id.lower(), 0) <= 0:
            short.append(sku_id)
            continue
        try:
            await graph.assign_license(user_id, sku_id)
            given.append(sku_id)
            seats[sku_id.lower()] -= 1
        except GraphError as exc:
            failed.append(f"licence {sku_id}: {exc}")
    groups: list[str] = []
    for group in reclaimed.group_ids:
        try:
            await graph.add_group_member(group, user_id)
            groups.append(group)
        except GraphError as exc:
            failed.append(f"group {group}: {exc}")
    outcome = GiveBack(Reclaim(tuple(given), tuple(groups)), tuple(short), tuple(failed))
    result = "no-seat" if short else "failed" if failed else "done"
    await Auditor(audit, actor, clock).record(
        ACTION,
        user_id,
        outcome=result,
        reason="the guest is back: its licences are given back",
        evidence={"returned": outcome.returned.to_json(), "noSeat": list(short), "failed": list(failed)},
        correlation_id=correlation_id,
    )
    if short or failed:
        await _alert(graph, alerting, user_id, short, failed)
    return outcome


async def _alert(
    graph: ReturnGraph, alerting: Alerting, user_id: str, short: Sequence[str], failed: Sequence[str]
) -> None:
    if not alerting.sender or not alerting.recipients:
        log.warning(
            "licences of returning guest %s not given back (no seat: %s; failed: %s); no one to alert "
            "(MAIL_SENDER, ADMIN_ALERT_RECIPIENTS)",
            user_id,
            list(short),
            list(failed),
        )
        return
    lines = [f"<li>{html.escape(sku)}: no free seat</li>" for sku in short]
    lines += [f"<li>{html.escape(reason)}</li>" for reason in failed]
    body = (
        f"<p>The guest <code>{user_id}</code> is back (re-enabled or restored), but guestwarden could not give back "
        "every licence it took when the guest was disabled:</p><ul>" + "".join(lines) + "</ul>"
        "<p>Free seats, then assign them (or run <code>guestwarden restore</code> again).</p>"
    )
    subject = f"guestwarden: licences of returning guest {user_id} not given back"
    try:
        await graph.send_mail(OutgoingMail(alerting.sender, alerting.recipients, subject, body))
    except GraphError as exc:
        log.warning("could not alert the admins about guest %s's licences: %s", user_id, exc)
