"""Secrets never reach the logs: every logger at DEBUG (ours, azure.*, msgraph/kiota, httpx) while the webhook,
the ticket sinks, the Graph gateway, the Service Bus publisher and the settings handle real secrets, on their
success and failure paths. The end-to-end variant (through the local host) is tests/reliability/test_secrets_e2e.py.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.servicebus_broker import LocalServiceBusBroker
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphError, GraphGateway
from shared.adapters.queue import ServiceBusPublisher
from shared.adapters.tickets import ServiceNowSink, WebhookSink
from shared.ports.publisher import OutgoingMessage, QueueError
from shared.ports.tickets import TicketSinkError
from shared.services.risk_response import respond_to_incident
from shared.services.webhook import WebhookDeps, WebhookRequest, handle_graph_webhook
from shared.settings import SettingsError, load_settings
from tests.fakes.publisher import InMemoryPublisher
from tests.fixtures.secret_logs import SecretLogs
from tests.unit.test_risk_response import RecordingSink, make, payload, world
from tests.unit.test_webhook import SUB, body, change

CLIENT_STATE = f"client-state-{uuid.uuid4().hex}"
SINK_SECRET = f"sink-secret-{uuid.uuid4().hex}"
SNOW_PASSWORD = f"snow-password-{uuid.uuid4().hex}"
SB_KEY = f"sbkey{uuid.uuid4().hex}"


async def test_webhook_never_logs_the_client_state_or_a_guess_of_it(secret_logs: SecretLogs) -> None:
    publisher = InMemoryPublisher()

    async def ids() -> frozenset[str]:
        return frozenset({SUB})

    deps = WebhookDeps(publisher, "guest-changes", CLIENT_STATE, ids)
    guess = CLIENT_STATE[:-1] + "x"
    headers = {"Content-Type": "application/json"}
    requests = [
        body(change(client_state=CLIENT_STATE)),
        body(change(client_state=guess)),
        body(change(client_state=CLIENT_STATE, sub="not-ours")),
        json.dumps({"value": [{"clientState": CLIENT_STATE}]}).encode(),
        b"{" + CLIENT_STATE.encode(),
    ]
    for raw in requests:
        await handle_graph_webhook(WebhookRequest("POST", {}, headers, raw), deps)
    failing = WebhookDeps(InMemoryPublisher(fail_queues={"guest-changes": "down"}), "guest-changes", CLIENT_STATE, ids)
    await handle_graph_webhook(WebhookRequest("POST", {}, headers, requests[0]), failing)
    assert publisher.messages("guest-changes")
    secret_logs.assert_clean(client_state=CLIENT_STATE, attacker_guess=guess)


@pytest.mark.parametrize("status", [201, 500])
async def test_ticket_sinks_never_log_their_secret_or_password(secret_logs: SecretLogs, status: int) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"id": "T-1", "result": {"number": "INC1"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        graph = world()
        deps, _ = make(graph, WebhookSink("https://partner.example/hooks", SINK_SECRET.encode(), http))
        try:
            await respond_to_incident(payload(), deps)
        except Exception as exc:  # the failing sink surfaces (the message will be retried)
            assert status == 500, exc
        snow = ServiceNowSink("https://partner.service-now.com", ("guestwarden", SNOW_PASSWORD), http, str)
        deps2, _ = make(world(), snow)
        try:
            await respond_to_incident(payload(), deps2)
        except Exception as exc:
            assert status == 500, exc
        recording = RecordingSink()
        deps3, _ = make(world(), recording)
        await respond_to_incident(payload(), deps3)
        refusing = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(401)))
        async with refusing:
            with pytest.raises(TicketSinkError):
                await ServiceNowSink("https://x.service-now.com", ("u", SNOW_PASSWORD), refusing, str).open(
                    recording.tickets[0]
                )
    assert seen  # the secrets were really used on the wire
    secret_logs.assert_clean(sink_secret=SINK_SECRET, snow_password=SNOW_PASSWORD)


async def test_graph_gateway_never_logs_the_bearer_token(graph_sim: GraphSimulator, secret_logs: SecretLogs) -> None:
    bearer = graph_sim.token()  # a real (simulator-signed) token, so the calls get past authentication
    gateway = GraphGateway(LocalTokenCredential(token=bearer), GraphConfig(base_url=graph_sim.base_url, max_retries=1))
    async with gateway:
        assert await gateway.get_user(graph_sim.named("pending-recent")) is not None
        assert await gateway.get_user(str(uuid.uuid4())) is None
        graph_sim.faults.fail_next(2, status=429, retry_after_s=0)
        with pytest.raises(GraphError):
            await gateway.list_subscribed_skus()
    assert any(line.startswith(("httpx", "httpcore")) for line in secret_logs.lines)  # the wire was logged
    secret_logs.assert_clean(bearer=bearer)


async def test_servicebus_publisher_never_logs_the_connection_key(
    servicebus_broker: LocalServiceBusBroker, secret_logs: SecretLogs
) -> None:
    connection = servicebus_broker.connection_string.replace("SharedAccessKey=local", f"SharedAccessKey={SB_KEY}")
    publisher = ServiceBusPublisher.from_connection_string(connection)
    try:
        await publisher.publish("test-queue", OutgoingMessage(message_id="m1", type="t", body={"a": 1}))
        with pytest.raises(QueueError):
            await publisher.publish("no-such-queue", OutgoingMessage(message_id="m2", type="t", body={}))
    finally:
        await publisher.close()
    assert servicebus_broker.queue_depth("test-queue") == 1
    assert any(line.startswith("azure.") for line in secret_logs.lines)  # the SDK's DEBUG records were seen
    secret_logs.assert_clean(servicebus_key=SB_KEY)


def test_settings_errors_never_echo_secrets(secret_logs: SecretLogs) -> None:
    import logging

    env = {
        "SERVICEBUS_CONNECTION": f"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey={SB_KEY}",
        "GRAPH_CLIENT_STATE": CLIENT_STATE,
        "GRAPH_NOTIFICATION_URL": f"http://public.example/api?code={SINK_SECRET}",
        "GRAPH_MAX_RETRIES": "lots",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    logging.getLogger("guestwarden.test").error("start refused: %s", caught.value)  # what a host would log
    secret_logs.assert_clean(servicebus_key=SB_KEY, client_state=CLIENT_STATE, function_key=SINK_SECRET)


def test_the_scan_catches_a_leak_raw_or_url_encoded(secret_logs: SecretLogs) -> None:
    import logging

    logging.getLogger("azure.servicebus").debug("token=%s", "Bearer abc/def+ghi=")
    with pytest.raises(AssertionError, match="bearer leaked"):
        secret_logs.assert_clean(bearer="Bearer abc/def+ghi=")
    logging.getLogger("kiota_http").debug("url=%s", "https://x/?code=abc%2Fdef%2Bghi%3D")
    with pytest.raises(AssertionError, match="key leaked"):
        secret_logs.assert_clean(key="abc/def+ghi=")
