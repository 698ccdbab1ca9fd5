"""`make demo` keeps working: the demo plays every flow on the local world and checks its own outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_demo_sees_every_expected_outcome(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    result = subprocess.run(
        [sys.executable, "-m", "local.demo", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "expected outcomes seen" in result.stdout
    assert (out / "mails.json").is_file() and (out / "tickets.json").is_file()
    assert any((out / "reports").glob("*.html"))
