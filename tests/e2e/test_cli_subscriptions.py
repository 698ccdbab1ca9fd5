"""`guestwarden subscriptions ensure|status` as an operator runs them after a deployment: real processes for
the Graph simulator, the functions host (our webhook answers the validation handshake) and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.world import app_settings, free_port
from tests.e2e.cli import guestwarden

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
KEY = "cli-function-key"

pytestmark = pytest.mark.timeout(90)


def spawn(args: list[str], env: dict[str, str], ready: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if ready in line:
            return process, line
    process.wait(timeout=5)
    raise AssertionError(f"{args[1]} did not start: {''.join(seen)[-2000:]}")


@pytest.fixture
def operator_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    sim, line = spawn(["-m", "local.graph_sim", "--tenant", str(FIXTURE), "--port", "0"], dict(os.environ), "listening")
    graph_url = line.rsplit("listening on ", 1)[1].strip()
    port = free_port()
    settings = app_settings(
        graph_url=graph_url,
        # never contacted: the handshake is answered before the webhook touches the queue
        servicebus="Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=k;SharedAccessKey=k;UseDevelopmentEmulator=true;",
        host_port=port,
        state_path=tmp_path / "state.db",
        function_key=KEY,
        client_state="cli-client-state-0123456789abcdef",
    )
    env = {**os.environ, **settings}
    host, _ = spawn(
        ["-m", "local.host", "--app", "function_app:app", "--port", str(port), "--functions", "graph_notifications"],
        env,
        "graph_notifications",
    )
    try:
        yield {**env, "GRAPH_BASE_URL": graph_url}
    finally:
        for process in (host, sim):
            process.terminate()
            process.wait(timeout=15)


cli = guestwarden


def test_status_before_ensure_is_unhealthy_then_ensure_creates_and_status_is_healthy(
    operator_env: dict[str, str],
) -> None:
    graph = operator_env["GRAPH_BASE_URL"]
    before = cli("subscriptions", "status", "--tenant-sim", graph, "--json", env=operator_env)
    assert before.returncode == 6, before.stderr
    assert json.loads(before.stdout)["live"] is False

    ensured = cli("subscriptions", "ensure", "--tenant-sim", graph, "--json", env=operator_env)
    assert ensured.returncode == 0, ensured.stderr
    created = json.loads(ensured.stdout)
    assert created["action"] == "created"

    after = cli("subscriptions", "status", "--tenant-sim", graph, "--json", env=operator_env)
    assert after.returncode == 0, after.stderr + after.stdout
    status = json.loads(after.stdout)
    assert status["remembered_id"] == created["subscriptionId"]
    assert status["healthy"] and status["notification_url_matches"]

    again = cli("subscriptions", "ensure", "--tenant-sim", graph, "--json", env=operator_env)
    assert json.loads(again.stdout)["action"] == "unchanged"


def test_ensure_without_a_reachable_webhook_explains_the_failed_handshake(operator_env: dict[str, str]) -> None:
    env = {**operator_env, "GRAPH_NOTIFICATION_URL": f"http://127.0.0.1:{free_port()}/api/graph/notifications"}
    result = cli("subscriptions", "ensure", "--tenant-sim", operator_env["GRAPH_BASE_URL"], env=env)
    assert result.returncode == 3
    assert "validation" in result.stderr.lower()
    assert "Traceback" not in result.stderr
