"""`make demo` keeps working: the demo plays every flow on the local world and checks its own outcomes; with
`--keep-running` the world stays up for the CLI and curl, and Ctrl-C (SIGTERM here) shuts it down cleanly."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.cli import guestwarden
from tests.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]


def settings_from(env_file: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    return {key: shlex.split(value)[0] if value else "" for key, value in pairs}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return guestwarden(*args, env={**os.environ, **env}, timeout=60)


@pytest.mark.timeout(300)
def test_demo_sees_every_expected_outcome_and_stays_up_for_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "local.demo", "--out", str(out), "--keep-running"],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        env_file = out / "demo.env"
        eventually_sync(lambda: env_file.is_file() or demo.poll() is not None, timeout_s=240)
        assert env_file.is_file(), log.read_text()[-4000:]
        settings = settings_from(env_file)

        # the operator's view of what the demo did, through the same CLI an admin runs against Azure
        audit = cli(settings, "audit", "--days", "1", "--limit", "100000", "--json")
        assert audit.returncode == 0, audit.stderr
        actions = {row["action"] for row in json.loads(audit.stdout)}
        expected = {"assign-license", "risk-notify", "risk-ticket", "create-subscription", "stale-delete"}
        assert expected <= actions, f"{audit.stdout[:2000]}\n{audit.stderr[-2000:]}\n{log.read_text()[-4000:]}"
        status = cli(settings, "subscriptions", "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr

        # and the webhook answers Graph's validation handshake, as curl would see it
        url = settings["GRAPH_NOTIFICATION_URL"]
        reply = httpx.post(httpx.URL(url).copy_merge_params({"validationToken": "hello from curl"}), timeout=30)
        assert reply.status_code == 200 and reply.text == "hello from curl"
        assert reply.headers["content-type"].startswith("text/plain")
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=60)
    output = log.read_text()
    assert code == 0, output[-4000:]
    assert "expected outcomes seen" in output
    assert (out / "mails.json").is_file() and (out / "tickets.json").is_file()
    assert any((out / "reports").glob("*.html"))
