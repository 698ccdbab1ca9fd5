"""`python -m local.graph_sim` prints its URL on one line and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_cli_prints_url_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "local.graph_sim", "--tenant", "local/fixtures/contoso.json", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("graph-sim listening on http://127.0.0.1:") and line.endswith("/v1.0")
        base_url = line.rsplit(" ", 1)[-1]
        token_url = base_url.removesuffix("/v1.0") + "/common/oauth2/v2.0/token"
        token = httpx.post(token_url, data={"grant_type": "client_credentials"}).json()["access_token"]
        assert httpx.get(f"{base_url}/subscribedSkus", headers={"Authorization": "Bearer t"}).status_code == 401
        response = httpx.get(f"{base_url}/subscribedSkus", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
