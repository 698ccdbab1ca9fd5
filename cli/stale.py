"""`guestwarden stale plan|apply` and `guestwarden restore`: the stale sweep from the operator's chair.

Composed into the main CLI by cli/main.py (same `--tenant-sim`, settings and exit codes). Progress goes to
stderr; `--json` prints only JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from cli.common import (
    EXIT_GRAPH,
    EXIT_NOT_APPLIED,
    EXIT_USAGE,
    JsonFlag,
    TenantSim,
    command_settings,
    err,
    spinner,
    table_console,
)
from shared.adapters.graph import GraphError
from shared.bootstrap import build_graph_gateway, build_state_store, stale_deps
from shared.services.stale import RestoreOutcome, StaleDeps, StalePlan, restore_guest, restore_run, sweep_stale_guests
from shared.settings import Feature, Settings

stale_app = typer.Typer(help="The stale-guest sweep: plan (dry run) or apply.", no_args_is_help=True)
T = TypeVar("T")


def _run(settings: Settings, quiet: bool, job: Callable[[StaleDeps], Awaitable[T]]) -> T:
    progress = spinner(quiet)

    async def go() -> T:
        with progress:
            task = progress.add_task("starting", total=None)

            def on_progress(phase: str, count: int) -> None:
                progress.update(task, description=f"{'guests read' if phase == 'reading' else 'actions'}: {count}")

            async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
                deps = replace(stale_deps(settings, graph, state), on_progress=on_progress)
                return await job(deps)

    try:
        return asyncio.run(go())
    except GraphError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(EXIT_GRAPH) from None


def _print_plan(plan: StalePlan, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(plan.as_json(), indent=2) + "\n")
        return
    out = table_console()
    table = Table(title=f"stale-guest plan {plan.run_id}: {plan.status}")
    for column in ("action", "outcome", "guest", "sign-in name", "home domain", "reason", "inactive days"):
        table.add_column(column, overflow="fold")
    for item in plan.items:
        # Text(), not markup: names are written by outsiders.
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    item.action,
                    item.outcome,
                    item.display_name,
                    item.user_principal_name,
                    item.home_domain,
                    item.reason,
                    item.evidence.get("inactiveDays", ""),
                )
            )
        )
    out.print(table)
    out.print(Text(f"{plan.guests_seen} guests; " + ", ".join(f"{k}: {v}" for k, v in sorted(plan.counts.items()))))
    if plan.message:
        out.print(Text(plan.message, style="yellow"))
    for path in plan.reports:
        out.print(Text(f"report: {path}"))


@stale_app.command("plan")
def plan_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Compute the full plan without changing anything (always a dry run)."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE, Feature.STALE)) as settings:
        plan = _run(settings, as_json or not err.is_terminal, lambda d: sweep_stale_guests(d, dry_run=True))
    _print_plan(plan, as_json)


@stale_app.command("apply")
def apply_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Run the sweep with the same safety as the timer. Acts only when STALE_DRY_RUN=false."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE, Feature.STALE)) as settings:
        if settings.stale.dry_run:
            err.print("STALE_DRY_RUN is true: set STALE_DRY_RUN=false to act (or use `stale plan`).")
            raise typer.Exit(EXIT_USAGE)
        plan = _run(settings, as_json or not err.is_terminal, sweep_stale_guests)
    _print_plan(plan, as_json)
    if plan.status != "applied":
        raise typer.Exit(EXIT_NOT_APPLIED)


def restore_command(
    user: Annotated[str | None, typer.Argument(help="Object id of a guest guestwarden disabled or deleted.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Undo every disable and delete of this run id.")] = None,
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
) -> None:
    """Undo guestwarden's stale sweep: restore deleted guests (within 30 days) and re-enable disabled ones."""
    if (user is None) == (run is None):
        err.print("give either a USER id or --run RUN_ID")
        raise typer.Exit(EXIT_USAGE)
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE)) as settings:

        async def job(deps: StaleDeps) -> list[RestoreOutcome]:
            return await restore_run(run, deps) if run else [await restore_guest(str(user), deps)]

        outcomes = _run(settings, as_json or not err.is_terminal, job)
    if as_json:
        sys.stdout.write(
            json.dumps(
                [{"userId": o.user_id, "status": o.status, "detail": o.detail} for o in outcomes],
                indent=2,
            )
            + "\n"
        )
    else:
        for o in outcomes:
            err.print(Text(f"{o.user_id}: {o.status} {o.detail}".rstrip()))
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(EXIT_GRAPH)
