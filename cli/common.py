"""What every `guestwarden` command shares: options, exit codes, and settings (real tenant or simulator).

`command_env` is the one place the CLI reads the environment; it hands it to shared.bootstrap, which builds the
settings and every adapter a command uses.

Exit codes: 0 done; 2 bad usage or settings; 3 Graph refused or failed; 4 the local simulator did not start;
5 `stale apply` did not apply (capped, aborted or incomplete: the plan and report say why); 6 `subscriptions
status` found no healthy subscription; 7 `doctor` found a failing check; 8 `posture` found a failing check.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from shared.bootstrap import settings_from_env
from shared.permissions import FLOWS, features_for
from shared.settings import Feature, Settings, SettingsError

EXIT_USAGE = 2
EXIT_GRAPH = 3
EXIT_SIMULATOR = 4
EXIT_NOT_APPLIED = 5
EXIT_UNHEALTHY = 6
EXIT_DOCTOR = 7
EXIT_POSTURE = 8

err = Console(stderr=True)

TenantSim = Annotated[
    str | None,
    typer.Option(
        "--tenant-sim",
        help="Use the local Graph simulator: a tenant fixture FILE (started for this command) or the URL of "
        "a running simulator. Without it, the app settings of a real tenant are used.",
        metavar="FILE|URL",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout, nothing else.")]
FlowsOption = Annotated[
    str,
    typer.Option(
        "--flows",
        help=f"Comma-separated flows the deployment runs ({', '.join(FLOWS)}); the permissions follow from them "
        "and from LICENSE_MODE / STALE_DRY_RUN.",
    ),
]
ALL_FLOWS = ",".join(FLOWS)


def table_console() -> Console:
    """stdout for tables: the terminal's width, or wide enough not to fold columns when piped."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def parse_flows(text: str) -> tuple[Feature, ...]:
    """The settings features of `--flows`; exits 2 naming an unknown flow."""
    try:
        return features_for(name.strip() for name in text.split(",") if name.strip())
    except ValueError as exc:
        err.print(Text(f"--flows: {exc}", style="red"))
        raise typer.Exit(EXIT_USAGE) from None


@contextlib.contextmanager
def simulator(fixture: Path) -> Iterator[str]:
    """Start `python -m local.graph_sim` for one command; yields its base URL, stops it after.

    A separate process (not an import): to a command the simulator is a tenant like any other, only settings
    differ.
    """
    if not fixture.is_file():
        err.print(f"[red]--tenant-sim: no tenant fixture at {fixture}[/red]")
        raise typer.Exit(EXIT_USAGE)
    command = [sys.executable, "-m", "local.graph_sim", "--tenant", str(fixture), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on " not in line:
            _, errors = process.communicate(timeout=5)
            err.print(f"[red]the Graph simulator did not start:[/red] {line.strip()} {errors.strip()[-2000:]}")
            raise typer.Exit(EXIT_SIMULATOR)
        yield line.rsplit("listening on ", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def command_env(tenant_sim: str | None) -> Iterator[Mapping[str, str]]:
    """The app settings a command reads: the environment, with Graph pointed at the simulator for --tenant-sim.

    The only place cli/ reads os.environ: commands hand what it yields to shared.bootstrap."""
    if tenant_sim is None:
        yield os.environ
    elif tenant_sim.startswith(("http://", "https://")):
        yield {**os.environ, "GRAPH_BASE_URL": tenant_sim, "GRAPH_AUTH": "local-token"}
    else:
        with simulator(Path(tenant_sim)) as url:
            yield {**os.environ, "GRAPH_BASE_URL": url, "GRAPH_AUTH": "local-token"}


@contextlib.contextmanager
def command_settings(tenant_sim: str | None, features: tuple[Feature, ...]) -> Iterator[Settings]:
    """Validated settings for `features` (bootstrap reads them from `command_env`); exits 2 naming the problems."""
    try:
        with command_env(tenant_sim) as env:
            yield settings_from_env(features, env)
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(EXIT_USAGE) from None


def spinner(quiet: bool) -> Progress:
    """A transient spinner with elapsed time on stderr (stdout stays clean for --json); off with quiet."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )


def progress_bar(quiet: bool) -> Progress:
    """A transient progress bar on stderr for long work with a known total: done / total, elapsed, ETA (the
    bar pulses while the total is unknown)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=True,
    )
