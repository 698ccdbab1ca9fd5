"""Observability: the correlation id from the webhook to the licence action, counters, lazy Azure Monitor.

The flow tests call the real function modules (functions/notifications.py, functions/licensing.py) with the
services swapped for fakes; the exporter test runs the real Azure Monitor distro against a local ingestion
endpoint in a subprocess (a meter provider can be set once per process).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import functions.licensing
import functions.notifications
import functions.queue_messages
import shared.observability
from local.world import free_port
from shared.domain.messages import GUEST_CHANGES_QUEUE, MalformedMessage
from shared.observability import AUDIT_LOGGER, MAX_DELIVERY_COUNT, CountingStateStore, install_log_correlation
from shared.ports.state import AuditEntry, InvalidKeyError
from shared.services.conversion import ConversionDeps
from shared.services.licensing import LicensingDeps
from shared.services.webhook import WebhookDeps
from tests.fakes.publisher import InMemoryPublisher
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes import FakeGraph
from tests.unit.test_licensing_service import accepted, make_deps, sku
from tests.unit.test_webhook import JSON_HEADERS, SECRET, SUB, body, change

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def metric_reader(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    """A meter provider of this test's own: the counters report to it (no process-wide provider is set)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(shared.observability, "_meter", lambda: provider.get_meter("guestwarden"))
    return reader


def counter_total(reader: InMemoryMetricReader, name: str, **attributes: object) -> int:
    """The cumulative sum of one counter over the points whose attributes include `attributes`."""
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attributes.items()):  # type: ignore[union-attr]
                        total += int(point.value)  # type: ignore[union-attr]
    return total


class FakeServices:
    """Stands in for AppServices in the function modules: the webhook and licensing on shared fakes."""

    def __init__(self) -> None:
        self.publisher = InMemoryPublisher()
        self.graph = FakeGraph([accepted("g1")], [sku()])
        self.state = CountingStateStore(MemoryStateStore())

    def current(self) -> FakeServices:
        return self

    def webhook(self) -> WebhookDeps:
        async def ids() -> frozenset[str]:
            return frozenset({SUB})

        return WebhookDeps(self.publisher, GUEST_CHANGES_QUEUE, SECRET, ids)

    def licensing(self) -> LicensingDeps:
        return make_deps(self.graph, state=self.state, publisher=self.publisher)

    def conversion(self) -> ConversionDeps:
        licensing = self.licensing()
        graph: Any = self.graph  # the licensing fake: reviewing a guest that stayed a guest needs no $batch
        return ConversionDeps(graph, self.state, licensing.policy, licensing.alerting, licensing.clock)


@pytest.fixture
def services(monkeypatch: pytest.MonkeyPatch) -> FakeServices:
    fake = FakeServices()
    monkeypatch.setattr(functions.notifications, "AppServices", fake)
    monkeypatch.setattr(functions.queue_messages, "AppServices", fake)
    install_log_correlation()
    return fake


def delivered(body: bytes, message_id: str, correlation_id: str | None, delivery_count: int = 1) -> ServiceBusMessage:
    """A message as the Functions host hands it to the trigger."""
    return ServiceBusMessage(
        body=body,
        message_id=message_id,
        correlation_id=correlation_id,
        delivery_count=delivery_count,
        application_properties={},
        user_properties={},
    )


async def test_the_licence_action_is_logged_with_the_correlation_id_the_webhook_received(
    services: FakeServices, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    request = func.HttpRequest(
        "POST", "https://app/api/graph/notifications", headers=JSON_HEADERS, body=body(change("g1"))
    )
    reply = await functions.notifications.graph_notifications(request)
    assert reply.status_code == 202
    [message] = services.publisher.messages(GUEST_CHANGES_QUEUE)
    webhook_id = message.correlation_id
    assert webhook_id

    caplog.set_level(logging.INFO)
    await functions.licensing.process_guest_change(
        delivered(message.encoded_body().encode(), message.message_id, message.correlation_id)
    )

    [licence_line] = [
        r for r in caplog.records if r.name == AUDIT_LOGGER and getattr(r, "action", "") == "assign-license"
    ]
    assert licence_line.correlation_id == webhook_id  # type: ignore[attr-defined]
    assert licence_line.subject == "g1" and licence_line.outcome == "done"  # type: ignore[attr-defined]
    # every line logged while the message was handled carries the id, the function's own summary included
    handled = [r for r in caplog.records if r.name.startswith(("functions.", "shared.", "guestwarden"))]
    assert handled and {getattr(r, "correlation_id", None) for r in handled} == {webhook_id}
    assert counter_total(metric_reader, "guestwarden.actions", action="assign-license", outcome="done") == 1
    assert counter_total(metric_reader, "guestwarden.actions", action="set-usage-location", outcome="done") == 1
    # outside the message, records carry no id
    logging.getLogger("shared.test").info("after")
    assert caplog.records[-1].correlation_id == ""  # type: ignore[attr-defined]


async def test_only_a_failure_on_the_last_delivery_counts_as_dead_lettered(
    services: FakeServices, metric_reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    bad = delivered(b"not json", "m-bad", "c-bad", delivery_count=1)
    with pytest.raises(MalformedMessage):
        await functions.licensing.process_guest_change(bad)
    assert counter_total(metric_reader, "guestwarden.dead_lettered", queue=GUEST_CHANGES_QUEUE) == 0

    last = delivered(b"not json", "m-bad", "c-bad", delivery_count=MAX_DELIVERY_COUNT[GUEST_CHANGES_QUEUE])
    with pytest.raises(MalformedMessage):
        await functions.licensing.process_guest_change(last)
    assert (
        counter_total(metric_reader, "guestwarden.dead_lettered", queue=GUEST_CHANGES_QUEUE, error="MalformedMessage")
        == 1
    )
    [line] = [r for r in caplog.records if getattr(r, "event", "") == "dead-letter"]
    assert line.correlation_id == "c-bad" and "m-bad" in line.getMessage()  # type: ignore[attr-defined]


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}


@pytest.mark.timeout(300)  # a subprocess on a slow machine
def test_without_a_connection_string_azure_monitor_is_never_imported() -> None:
    code = (
        "import sys, function_app\n"
        "from shared.observability import configure_telemetry\n"
        "import os\n"
        "from shared.settings import load_settings\n"
        "assert configure_telemetry(load_settings(os.environ, ())) is False\n"
        "print(sorted(m for m in sys.modules if m.startswith('azure.monitor')))\n"
    )
    result = run_python(code, clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.timeout(300)  # a subprocess on a slow machine
def test_a_broken_connection_string_leaves_the_app_running_without_telemetry() -> None:
    code = (
        "from shared.observability import configure_telemetry\n"
        "import os\n"
        "from shared.settings import load_settings\n"
        "print(configure_telemetry(load_settings(os.environ, ())))\n"
    )
    result = run_python(code, clean_env() | {"APPLICATIONINSIGHTS_CONNECTION_STRING": "not-a-connection-string"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING is not usable" in result.stderr
    assert "not-a-connection-string" not in result.stderr


class _Ingestion(BaseHTTPRequestHandler):
    envelopes: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        text = raw.decode()
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()]
        type(self).envelopes.extend(items)
        answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local Application Insights ingestion endpoint that records every envelope it receives."""
    _Ingestion.envelopes = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Ingestion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", _Ingestion.envelopes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)


EXPORT_SCRIPT = """
import asyncio
from datetime import UTC, datetime
from opentelemetry import _logs, metrics
from shared.ports.state import AuditEntry, InvalidKeyError
from tests.fakes.state import MemoryStateStore
from shared.observability import CountingStateStore, configure_telemetry
import os
from shared.settings import load_settings

assert configure_telemetry(load_settings(os.environ, ())) is True
entry = AuditEntry(at=datetime.now(UTC), actor="license-processor", action="assign-license", subject="g1",
                   reason="invitation accepted", dry_run=False, outcome="done", correlation_id="cid-from-webhook")
asyncio.run(CountingStateStore(MemoryStateStore()).append(entry))
_logs.get_logger_provider().force_flush()
metrics.get_meter_provider().force_flush()
"""


@pytest.mark.timeout(300)  # a subprocess on a slow machine
def test_azure_monitor_receives_the_action_with_its_correlation_id_and_the_counter(
    ingestion: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    endpoint, envelopes = ingestion
    env = clean_env() | {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={endpoint}"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",  # no calls to Microsoft's statsbeat endpoint
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",  # no Azure VM metadata probing
        "TMPDIR": str(tmp_path),  # the exporter's offline retry storage
    }
    result = run_python(EXPORT_SCRIPT, env)
    assert result.returncode == 0, result.stderr
    assert "00000000-0000-0000-0000-000000000000" not in result.stdout + result.stderr

    traces = [e for e in envelopes if e.get("data", {}).get("baseType") == "MessageData"]
    [action] = [t for t in traces if t["data"]["baseData"].get("properties", {}).get("event") == "audit"]
    properties = action["data"]["baseData"]["properties"]
    assert properties["correlation_id"] == "cid-from-webhook"
    assert (properties["action"], properties["outcome"], properties["subject"]) == ("assign-license", "done", "g1")
    metric_names = {
        m["name"]
        for e in envelopes
        if e.get("data", {}).get("baseType") == "MetricData"
        for m in e["data"]["baseData"]["metrics"]
    }
    assert "guestwarden.actions" in metric_names


async def test_counting_store_counts_only_entries_that_were_stored(metric_reader: InMemoryMetricReader) -> None:
    store = CountingStateStore(MemoryStateStore())
    good = AuditEntry(
        at=datetime.now(UTC),
        actor="stale-sweep",
        action="stale-disable",
        subject="u1",
        reason="r",
        dry_run=True,
        outcome="would-do",
    )
    await store.append(good)
    with pytest.raises(InvalidKeyError):
        await store.append(dataclasses.replace(good, subject=""))  # refused by the store: not counted
    assert counter_total(metric_reader, "guestwarden.actions", action="stale-disable", dry_run=True) == 1
    assert [e.subject async for e in store.query(good.at)] == ["u1"]
