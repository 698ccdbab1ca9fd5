"""`guestwarden posture`: the guest posture checks (docs/posture.md), each pass / warn / fail / unknown with the
evidence read from Graph and the fix with its admin center path. Read-only.

`--saved` shows the nightly timer's last result from the state store instead of reading Graph. Exit 8 when a
check fails (warnings and unknowns do not), so a pipeline can gate on it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from cli.common import EXIT_POSTURE, EXIT_USAGE, JsonFlag, TenantSim, command_settings, err, spinner, table_console
from shared.bootstrap import build_graph_gateway, build_state_store, posture_deps
from shared.domain.posture import PostureReport, Status
from shared.services.posture import latest_posture, run_posture, save_posture
from shared.settings import Feature, Settings

STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.UNKNOWN: "magenta"}


async def _run(settings: Settings, quiet: bool, save: bool) -> PostureReport:
    progress = spinner(quiet)
    with progress:
        task = progress.add_task("reading the tenant's settings and policies", total=None)

        def on_progress(what: str, done: int) -> None:
            progress.update(task, description=f"reading {what}: {done}")

        async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
            deps = posture_deps(settings, graph, state, lambda: datetime.now(UTC))
            deps.on_progress = on_progress
            report = await run_posture(deps)
            if save:
                await save_posture(state, report)
    return report


async def _saved(settings: Settings) -> PostureReport | None:
    async with build_state_store(settings) as state:
        return await latest_posture(state)


def render(report: PostureReport) -> None:
    table = Table(title=f"guest posture, {report.generated:%Y-%m-%d %H:%M} UTC", show_lines=True)
    for column in ("check", "status", "finding and evidence", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        # Text(), not markup: policy, group and guest names come from the tenant.
        finding = Text(check.summary, style="bold")
        for line in check.evidence:
            finding.append("\n- " + line, style="")
        fix = Text(check.fix or "-")
        if check.portal:
            fix.append(f"\n({check.portal})", style="dim")
        table.add_row(Text(check.title), Text(check.status.value, style=STYLE[check.status]), finding, fix)
    out = table_console()
    out.print(table)
    out.print(", ".join(f"{n} {status}" for status, n in report.counts().items()))


def posture(
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
    saved: Annotated[bool, typer.Option("--saved", help="Show the nightly result (no Graph reads).")] = False,
    save: Annotated[bool, typer.Option("--save", help="Keep this result as the latest (the sweep report's).")] = False,
) -> None:
    """Guest posture: who can invite, guest access, MFA and risk policies for guests, Entra ID P1/P2, hygiene."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE, Feature.POSTURE)) as settings:
        if saved:
            found = asyncio.run(_saved(settings))
            if found is None:
                err.print("[red]no saved posture yet: the nightly posture timer has not run (or run with --save)[/red]")
                raise typer.Exit(EXIT_USAGE)
            report = found
        else:
            report = asyncio.run(_run(settings, quiet=as_json or not err.is_terminal, save=save))
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    else:
        render(report)
    if report.status == Status.FAIL:
        raise typer.Exit(EXIT_POSTURE)
