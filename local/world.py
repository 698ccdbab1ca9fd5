"""The local world's shared wiring: ports, waiting for outcomes, and the app settings that point the real
function_app at the simulator, the broker and SQLite. Used by `make demo` and the end-to-end tests, so both
run the app with the same settings an operator would put in local.settings.json.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

from shared.settings import Settings

SCHEDULES = {
    field.alias: str(field.default)
    for field in Settings.model_fields.values()
    if field.alias and field.alias.endswith("_SCHEDULE")
}
"""Every timer binding resolves its %..._SCHEDULE% app setting before the host starts: the defaults."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def app_settings(
    *,
    graph_url: str,
    servicebus: str,
    host_port: int,
    state_path: Path,
    function_key: str,
    client_state: str,
    **extra: str,
) -> dict[str, str]:
    """Settings for the whole function_app on the local world (licensing in sku mode on contoso.json)."""
    return {
        **SCHEDULES,
        "GRAPH_BASE_URL": graph_url,
        "GRAPH_AUTH": "local-token",
        "GRAPH_MAX_RETRIES": "3",
        "GRAPH_NOTIFICATION_URL": f"http://127.0.0.1:{host_port}/api/graph/notifications?code={function_key}",
        "GRAPH_CLIENT_STATE": client_state,
        "SERVICEBUS_CONNECTION": servicebus,
        "STATE_BACKEND": "sqlite",
        "STATE_SQLITE_PATH": str(state_path),
        "LICENSE_MODE": "sku",
        "LICENSE_SKU": "AAD_PREMIUM",
        "DEFAULT_USAGE_LOCATION": "US",
        "MAIL_SENDER": "guestwarden@contoso.onmicrosoft.com",
        "ADMIN_ALERT_RECIPIENTS": "megan@contoso.com",
        "RISK_ORGANISATION_NAME": "Contoso",
        "RISK_SUPPORT_CONTACT": "guest-help@contoso.com",
        "LOCAL_HOST_FUNCTION_KEY": function_key,
        **extra,
    }
