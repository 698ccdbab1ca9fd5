"""Secrets through the whole app: the local host runs licensing, a forged notification and the risk flow (both
ticket sinks) with every logger at DEBUG (azure.*, msgraph/kiota, httpx, the host, the broker); then no log
line carries the clientState, the function key, the Service Bus key, a sink secret or the bearer token."""

from __future__ import annotations

import httpx
import pytest

from local.world import eventually
from tests.e2e.test_flow_risk import NAMED
from tests.fixtures.secret_logs import SecretLogs
from tests.reliability.fault_world import KEY, SECRETS, FaultWorld, risk_sign_ins

pytestmark = pytest.mark.timeout(180)


async def test_no_secret_reaches_any_log_line(secret_logs: SecretLogs, fault_world: FaultWorld) -> None:
    world = fault_world
    assert await world.live.fire_timer("subscription_keeper")
    [subscription] = world.sim.subscriptions()
    guest = NAMED["pending-recent"]
    world.sim.redeem_invitation(guest)
    for entry in risk_sign_ins(("risk-53011", "risk-530032")):
        world.sim.add_signin(entry)
    assert await world.live.fire_timer("risk_poller")
    forged = {
        "value": [
            {
                "subscriptionId": subscription["id"],
                "clientState": SECRETS["client_state"][:-2] + "zz",
                "changeType": "updated",
                "resource": f"Users/{guest}",
                "resourceData": {"id": guest},
            }
        ]
    }
    # the test's own client presents the key in the header (httpx logs URLs: a ?code= here would be our leak)
    async with httpx.AsyncClient(base_url=world.live.http_url) as client:
        route = "/api/graph/notifications"
        assert (await client.post(route, json=forged, headers={"x-functions-key": KEY})).status_code == 403
        assert (await client.post(route, json=forged, headers={"x-functions-key": "wrong-key"})).status_code == 401

    def done() -> bool:
        licensed = bool(world.sim.user(guest).get("assignedLicenses"))
        return licensed and len(world.sinks.webhook) == 1 and len(world.sinks.servicenow) == 1

    assert await eventually(done, 60), "licensing and both tickets"
    await world.live.idle()
    assert any(line.startswith("azure.") for line in secret_logs.lines)
    assert any(line.startswith(("httpx", "httpcore", "kiota")) for line in secret_logs.lines)
    scanned = secret_logs.assert_clean(**SECRETS)
    print(f"secrets scan: {len(SECRETS)} secrets, {scanned} log lines")
