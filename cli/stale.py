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
from rich.progress import TaskID
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
    progress_bar,
    table_console,
)
from shared.adapters.graph import GraphError
from shared.bootstrap import build_graph_gateway, build_state_store, stale_deps
from shared.domain.reinvite import reinvite_label
from shared.ports.reports import ReportStoreError
from shared.services.stale import (
    RestoreOutcome,
    StaleDeps,
    StalePlan,
    iter_items,
    restore_guest,
    restore_run,
    sweep_stale_guests,
)
from shared.settings import Feature, Settings

stale_app = typer.Typer(help="The stale-guest sweep: plan (dry run) or apply.", no_args_is_help=True)
T = TypeVar("T")


TABLE_ROWS = 200
"""The terminal table shows this many actions; the CSV report (and --json) has them all."""


def _run(
    settings: Settings,
    quiet: bool,
    job: Callable[[StaleDeps], Awaitable[T]],
    after: Callable[[StaleDeps, T], Awaitable[None]] | None = None,
) -> T:
    """Run `job` with the sweep's wiring and a progress bar (guests read, then actions done, with an ETA). The
    CLI runs a sweep to its end in one go (no time slice); one it interrupts is continued by the next
    `stale plan|apply` or by the function app's resume timer. `after` runs once the bar is gone (printing the
    plan, whose items are read from the report store while the connections are open)."""
    progress = progress_bar(quiet)

    async def go() -> T:
        with progress:
            tasks: dict[str, TaskID] = {}

            def on_progress(phase: str, done: int, total: int | None) -> None:
                label = "guests read" if phase == "reading" else "actions done"
                if phase not in tasks:
                    for task in tasks.values():
                        progress.update(task, visible=False)
                    tasks[phase] = progress.add_task(label, total=total)
                progress.update(tasks[phase], completed=done, total=total)

            async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
                deps = stale_deps(settings, graph, state)
                deps = replace(deps, on_progress=on_progress, config=replace(deps.config, slice_seconds=0))
                result = await job(deps)
                progress.stop()
                if after is not None:
                    await after(deps, result)
                return result

    try:
        return asyncio.run(go())
    except GraphError as exc:
        err.print(Text(str(exc), style="red"))
        raise typer.Exit(EXIT_GRAPH) from None
    except ReportStoreError as exc:
        err.print(Text(f"the sweep could not keep its plan in the report store: {exc}", style="red"))
        raise typer.Exit(EXIT_GRAPH) from None


async def _print_json(deps: StaleDeps, plan: StalePlan) -> None:
    """The plan as one JSON document, its items streamed from the run's parts."""
    head = json.dumps(plan.as_json(), indent=2)
    sys.stdout.write(head[: head.rindex("}")].rstrip() + ',\n  "items": [')
    first = True
    async for item in iter_items(deps.reports, plan):
        sys.stdout.write(("\n    " if first else ",\n    ") + json.dumps(item.as_json()))
        first = False
    sys.stdout.write("\n  ]\n}\n")


async def _print_plan(deps: StaleDeps, plan: StalePlan, as_json: bool) -> None:
    if as_json:
        await _print_json(deps, plan)
        return
    out = table_console()
    table = Table(title=f"stale-guest plan {plan.run_id}: {plan.status}")
    for column in ("action", "outcome", "guest", "sign-in name", "home domain", "reason", "inactive days", "re-invite"):
        table.add_column(column, overflow="fold")
    shown = 0
    async for item in iter_items(deps.reports, plan):
        if shown == TABLE_ROWS:
            break
        shown += 1
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
                    reinvite_label(item.evidence, item.outcome),
                )
            )
        )
    out.print(table)
    if plan.items_planned > shown:
        out.print(Text(f"(the first {shown} of {plan.items_planned} actions: the CSV report has them all)"))
    out.print(Text(f"{plan.guests_seen} guests; " + ", ".join(f"{k}: {v}" for k, v in sorted(plan.counts.items()))))
    if plan.licences_to_reclaim:
        out.print(Text(f"licences taken back with the disables: {plan.licences_to_reclaim} (STALE_RECLAIM_LICENSES)"))
    if plan.reinvites:
        out.print(Text(f"invitations to re-send with the warnings: {plan.reinvites} (STALE_REINVITE_PENDING)"))
    if plan.message:
        out.print(Text(plan.message, style="yellow"))
    for path in plan.reports:
        out.print(Text(f"report: {path}"))


def _plan_or_apply(settings: Settings, as_json: bool, *, dry_run: bool) -> StalePlan:
    def job(deps: StaleDeps) -> Awaitable[StalePlan]:
        return sweep_stale_guests(deps, dry_run=dry_run)

    async def show(deps: StaleDeps, plan: StalePlan) -> None:
        await _print_plan(deps, plan, as_json)

    plan = _run(settings, as_json or not err.is_terminal, job, show)
    if plan.status in ("busy", "running"):
        err.print(Text(plan.message, style="yellow"))
    return plan


@stale_app.command("plan")
def plan_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Compute the full plan without changing anything (always a dry run)."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE, Feature.STALE)) as settings:
        _plan_or_apply(settings, as_json, dry_run=True)


@stale_app.command("apply")
def apply_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Run the sweep with the same safety as the timer. Acts only when STALE_DRY_RUN=false."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE, Feature.STALE)) as settings:
        if settings.stale.dry_run:
            err.print("STALE_DRY_RUN is true: set STALE_DRY_RUN=false to act (or use `stale plan`).")
            raise typer.Exit(EXIT_USAGE)
        plan = _plan_or_apply(settings, as_json, dry_run=False)
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
