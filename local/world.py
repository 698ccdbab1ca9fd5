"""The local world's shared wiring: ports, waiting for outcomes, and the app settings that point the real
function_app at the simulator, the broker and SQLite. Used by `make demo` and the end-to-end tests, so both
run the app with the same settings an operator would put in local.settings.json.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.settings import setting_fields

SCHEDULES = {
    field.alias: str(field.default) for field in setting_fields() if field.alias and field.alias.endswith("_SCHEDULE")
}
"""Every timer binding resolves its %..._SCHEDULE% app setting before the host starts: the defaults."""


def flow_roles(flows: Iterable[str], settings: Mapping[str, str]) -> set[str]:
    """The Graph roles shared/permissions.py declares for these flows under these app settings (what
    docs/permissions.md lists, the "only when" conditions decided by the settings)."""
    from shared.permissions import features_for, required_permissions
    from shared.settings import load_settings

    features = features_for(flows)
    return required_permissions(features, load_settings(settings, features))


def with_roles(tenant: Any, roles: Iterable[str]) -> dict[str, Any]:
    """A copy of a tenant fixture (path or dict) whose guestwarden identity holds exactly `roles` on Graph."""
    import copy
    import json

    from local.graph_sim.identity import assignments_for

    if isinstance(tenant, dict):
        document = copy.deepcopy(tenant)
    else:
        with open(tenant, encoding="utf-8") as handle:
            document = json.load(handle)
    document["appRoleAssignments"] = assignments_for(document, roles)
    return document


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


POLL_S = 0.05
"""How often `eventually` re-checks: short against every deadline, long enough not to spin a core."""


async def eventually(condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0) -> bool:
    """Poll `condition` (sync or async) until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)


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
        # where sponsors' attestation links point (they are on only with STALE_ATTEST_SIGNING_KEY)
        "STALE_ATTEST_BASE_URL": f"http://127.0.0.1:{host_port}",
        # the operator dashboard's origin (it is on only with DASHBOARD_SIGNING_KEY)
        "DASHBOARD_BASE_URL": f"http://127.0.0.1:{host_port}",
        **extra,
    }


@dataclass
class RunningWorld:
    """The whole local world around the real function_app (see `running_world`)."""

    sim: Any
    broker: Any
    host: Any
    settings: dict[str, str]

    @property
    def notification_url(self) -> str:
        return self.settings["GRAPH_NOTIFICATION_URL"]


@asynccontextmanager
async def running_world(
    tenant: Any,
    state_dir: Path,
    *,
    functions: Iterable[str] | None = None,
    function_key: str = "local-function-key",
    client_state: str = "local-client-state-0123456789abcdef",
    **extra: str,
) -> AsyncIterator[RunningWorld]:
    """Start the simulator on `tenant` (a fixture path or dict), the broker, and the local host serving
    function_app (only `functions`, if given) with `app_settings`; stop all of it on exit. The app settings
    are exported to the environment for the duration, as the Functions worker sees them."""
    import function_app
    from local.graph_sim import GraphSimulator
    from local.host import LocalFunctionsHost
    from local.servicebus_broker import LocalServiceBusBroker, QueueOptions
    from shared.bootstrap import AppServices
    from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE

    sim = GraphSimulator(tenant) if isinstance(tenant, dict) else GraphSimulator.from_fixture(tenant)
    options = QueueOptions(max_delivery_count=5, lock_duration_s=30)
    broker = LocalServiceBusBroker(queues={GUEST_CHANGES_QUEUE: options, RISK_INCIDENTS_QUEUE: options})
    saved = dict(os.environ)
    host = None
    sim.start()
    try:
        broker.start()
        port = free_port()
        settings = app_settings(
            graph_url=sim.base_url,
            servicebus=broker.connection_string,
            host_port=port,
            state_path=state_dir / "state.db",
            function_key=function_key,
            client_state=client_state,
            **extra,
        )
        os.environ.update(settings)
        AppServices.reset()
        # One clock for the whole world: the host's timers and the app's flows read the simulator's clock, so a
        # jump (sim.clock.advance, host.advance_clock) moves every participant together.
        AppServices.use_clock(sim.clock.now)
        host = LocalFunctionsHost(function_app.build_app(), settings, port=port, clock=sim.clock, functions=functions)
        await host.start()
        yield RunningWorld(sim, broker, host, settings)
    finally:
        if host is not None:
            await host.stop()
        await AppServices.close_current()
        AppServices.reset()
        broker.stop()
        sim.stop()
        os.environ.clear()
        os.environ.update(saved)
