"""`python -m bench` (`make bench`): run the benchmarks, print the results table, append it to RESULTS.md.

python -m bench                         # all four, full size (10,000 and 100,000 guests)
python -m bench --only sweep --sizes 10000
python -m bench --quick                 # small sizes, a minute or two: a check, not a measurement
python -m bench --no-record             # print only, leave RESULTS.md alone
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import Row

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BENCHES = ("sweep", "poller", "webhook", "acceptance", "coldstart", "dashboard")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, {platform.system()}"


def verdict(row: Row) -> str:
    return "-" if row.ok is None else ("met" if row.ok else "NOT MET")


def table(rows: list[Row]) -> Table:
    out = Table(title="guestwarden benchmarks")
    for column in ("bench", "metric", "value", "target", "verdict", "note"):
        out.add_column(column, overflow="fold")
    for row in rows:
        style = "" if row.ok is None else ("green" if row.ok else "bold red")
        out.add_row(row.bench, row.metric, row.value, row.target, verdict(row), row.note, style=style)
    return out


def markdown(rows: list[Row], command: str, elapsed: float) -> str:
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- run time: {elapsed / 60:.1f} min",
        "",
        "| bench | metric | value | target | verdict | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = (row.bench, row.metric, row.value, row.target, verdict(row), row.note)
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[], list[Row]]]]:
    from bench import acceptance, coldstart, dashboard, poller, sweep, webhook

    sizes = args.sizes or ([2000] if args.quick else [10_000, 100_000])
    latency = 0 if args.quick else args.latency_ms
    steps: dict[str, Callable[[], list[Row]]] = {
        "sweep": lambda: sweep.run(sizes, latency_ms=latency, concurrency=args.concurrency),
        "poller": lambda: poller.run(sign_ins=5_000 if args.quick else 20_000),
        "webhook": lambda: webhook.run(count=400 if args.quick else 3000, throughput_s=3 if args.quick else 10),
        "acceptance": lambda: acceptance.run(single=10 if args.quick else 50, crowd=100 if args.quick else 1000),
        "coldstart": coldstart.run,
        "dashboard": lambda: dashboard.run(10_000, 2_000, 10) if args.quick else dashboard.run(),
    }
    return [(name, steps[name]) for name in (args.only or BENCHES)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only this bench (repeatable)")
    parser.add_argument("--sizes", type=int, nargs="+", help="tenant sizes for the sweep (guests)")
    parser.add_argument("--latency-ms", type=int, default=250, help="added to every Graph request in the sweep")
    parser.add_argument("--concurrency", type=int, default=8, help="STALE_SCAN_CONCURRENCY for the sweep")
    parser.add_argument("--quick", action="store_true", help="small sizes, no added latency")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 160))
    rows: list[Row] = []
    started = time.monotonic()
    failed: list[str] = []
    for name, step in plan(args):
        console.print(f"[bold]{name}[/bold] ...")
        begun = time.monotonic()
        try:
            rows += step()
        except Exception as exc:  # one broken bench must not hide the others' results
            failed.append(name)
            rows.append(Row(name, "bench run", "FAILED", "", False, f"{type(exc).__name__}: {exc}"[:300]))
        console.print(f"  {name} took {time.monotonic() - begun:.0f} s")
    elapsed = time.monotonic() - started
    console.print(table(rows))
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + markdown(rows, command.strip(), elapsed))
        console.print(f"appended to {RESULTS}")
    return 1 if failed else 0
