"""`guestwarden guests` (the guest inventory) and `guestwarden blocked` (guests blocked by home-tenant risk)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import EXIT_GRAPH, JsonFlag, TenantSim, command_settings, err, spinner, table_console
from shared.adapters.graph import GraphError
from shared.bootstrap import build_graph_gateway, build_state_store
from shared.domain.inventory import GuestRow
from shared.services.inventory import guest_inventory
from shared.services.risk_report import BlockedIncident, blocked_incidents
from shared.settings import Feature, Settings


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    days = (now - moment).days
    return f"{moment:%Y-%m-%d} ({days} d ago)" if days > 0 else f"{moment:%Y-%m-%d} (today)"


async def _collect_guests(settings: Settings, with_sponsors: bool, quiet: bool) -> list[GuestRow]:
    rows: list[GuestRow] = []
    progress = spinner(quiet)
    with progress:
        task = progress.add_task("reading guests: 0", total=None)

        def on_page(size: int) -> None:
            progress.update(task, description=f"reading guests: {len(rows)}")

        async with build_graph_gateway(settings) as graph:
            async for row in guest_inventory(graph, with_sponsors=with_sponsors, on_page=on_page):
                rows.append(row)
    return rows


def guests(
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
    sponsors: Annotated[bool, typer.Option(help="Look up each guest's sponsors ($batch, 20 a request).")] = True,
) -> None:
    """Guest inventory: invitation state, licences, last activity (any sign-in kind), sponsors."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.INVENTORY)) as settings:
        try:
            rows = asyncio.run(_collect_guests(settings, sponsors, quiet=as_json or not err.is_terminal))
        except GraphError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_GRAPH) from None
    if as_json:
        sys.stdout.write(json.dumps([r.as_json() for r in rows], indent=2) + "\n")
        return
    now = datetime.now(UTC)
    table = Table(title=f"{len(rows)} guests", show_lines=False)
    for column in ("guest", "sign-in name", "state", "enabled", "licences", "last activity", "sponsors"):
        table.add_column(column, overflow="fold")
    for row in sorted(rows, key=lambda r: (r.state, r.display_name.lower())):
        # Text(), not markup: display names and mails are written by outsiders.
        table.add_row(
            Text(row.display_name),
            Text(row.sign_in_name),
            Text(row.state),
            Text(
                {True: "yes", False: "no", None: "?"}[row.enabled],
                style="red" if row.enabled is False else "",
            ),
            Text(", ".join(row.licenses) or "-"),
            Text(_when(row.last_activity, now)),
            Text(", ".join(row.sponsors) or "-"),
        )
    out = table_console()
    out.print(table)
    pending = sum(r.state == "PendingAcceptance" for r in rows)
    never = sum(r.last_activity is None for r in rows)
    out.print(f"{len(rows)} guests: {pending} invitations pending, {never} never signed in.")


def blocked(
    as_json: JsonFlag = False,
    days: Annotated[int, typer.Option(min=1, max=365, help="How far back to look, in days.")] = 14,
) -> None:
    """Guests blocked by home-tenant risk: incidents, notice and ticket state (from the audit log)."""
    with command_settings(None, (Feature.STATE,)) as settings:

        async def collect() -> list[BlockedIncident]:
            async with build_state_store(settings) as state:
                return await blocked_incidents(state, datetime.now(UTC) - timedelta(days=days))

        rows = asyncio.run(collect())
    if as_json:
        sys.stdout.write(json.dumps([r.as_json() for r in rows], indent=2) + "\n")
        return
    table = Table(title=f"{len(rows)} risk incident(s) in the last {days} d")
    for column in ("detected", "guest", "home organisation", "code", "notice", "ticket", "ticket id", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # Text(), not markup: names come from outside.
        table.add_row(
            Text(f"{row.detected:%Y-%m-%d %H:%M}" if row.detected else "?"),
            Text(row.guest),
            Text(row.home_organisation or row.home_tenant_id),
            Text(str(row.error_code or "")),
            Text(row.notice),
            Text(row.ticket),
            Text(row.ticket_id or "-"),
            Text(row.state, style="red" if row.state == "open" else ""),
        )
    table_console().print(table)
