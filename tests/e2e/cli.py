"""Run the `guestwarden` CLI the way an operator does: its own process, app settings in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def guestwarden(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 100
) -> subprocess.CompletedProcess[str]:
    """`guestwarden ARGS` with `env` (default: this process's environment); never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        timeout=timeout,
        check=False,
    )
