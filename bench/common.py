"""What every bench shares: a result row, tenant files, and a Graph simulator in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.fixtures.generate import DEFAULT_NOW
from local.graph_sim.clock import parse_dt

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
FIXTURE_NOW = parse_dt(DEFAULT_NOW)  # the generated tenants' anchor; the simulator rebases it onto its start
SEED = 1
START_TIMEOUT_S = 120.0


@dataclass
class Row:
    bench: str
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None
    """None: reported only (no target)."""
    note: str = ""


def tenant_file(guests: int) -> Path:
    """A generated tenant (seeded: the same file every time), cached in bench/.cache/."""
    from local.fixtures.generate import write_tenant

    path = CACHE / f"tenant-{guests}-seed{SEED}.json"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        with partial.open("w", encoding="utf-8") as out:
            write_tenant(out, guests, SEED, FIXTURE_NOW)
        partial.replace(path)
    return path


def run_json(what: str, args: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python ARGS` from the repository root; its last stdout line, as JSON."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class SimProcess:
    """`python -m bench.sim_process` in a child process, driven by JSON lines on its stdin/stdout, so the
    simulator's own CPU and memory stay out of the measured process."""

    def __init__(self, tenant: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sim_process", "--tenant", str(tenant)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._read()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.base_url = line.split()[1]

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def call(self, command: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": command, **args}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self._read())
        if "error" in answer:
            raise RuntimeError(f"simulator command {command} failed: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
