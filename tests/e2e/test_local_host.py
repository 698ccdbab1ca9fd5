"""The local Functions host on a tiny app: HTTP triggers, timers on a driven clock, config errors, the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from local.host import HostConfigError, LocalFunctionsHost, ManualClock, UnsupportedBindingsError
from local.servicebus_broker import LocalServiceBusBroker
from tests.e2e.apps import tiny_app, unsupported_app
from tests.fixtures.servicebus import BrokerFactory
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
HTTP_FUNCTIONS = ["hello", "echo", "item", "secret", "boom"]
START = datetime(2024, 1, 1, tzinfo=UTC)

Events = list[tuple[str, Any]]


@pytest.fixture(autouse=True)
def no_worker_threads_left() -> Iterator[None]:
    yield
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("local-host-worker")]
    assert leftover == [], f"host worker threads still running: {leftover}"


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
async def http_host(events: Events) -> AsyncIterator[LocalFunctionsHost]:
    settings = {"TINY_SCHEDULE": "0 */5 * * * *", "LOCAL_HOST_FUNCTION_KEY": "k3y-for-tests"}
    host = LocalFunctionsHost(tiny_app.build_app(events), settings, port=0, functions=HTTP_FUNCTIONS)
    async with host:
        yield host


@pytest.fixture
async def client(http_host: LocalFunctionsHost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=http_host.http_url, timeout=10) as session:
        yield session


# -- HTTP triggers ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_http_trigger_answers_with_the_functions_status_body_and_headers(
    client: httpx.AsyncClient, events: Events, http_host: LocalFunctionsHost
) -> None:
    response = await client.get("/api/hello/ada", params={"greeting": "hi"}, headers={"X-Caller": "tests"})

    assert response.status_code == 200
    assert response.headers["x-tiny"] == "yes"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["name"] == "ada"
    assert body["greeting"] == "hi"
    assert body["caller"] == "tests"
    assert body["url"].startswith(f"{http_host.http_url}/api/hello/ada?")
    assert events == [("hello", "ada")]
    assert http_host.stats["hello"].invocations == 1
    assert http_host.stats["hello"].failures == 0


@pytest.mark.timeout(20)
async def test_async_function_gets_the_raw_body(client: httpx.AsyncClient, events: Events) -> None:
    payload = bytes(range(256))

    response = await client.post("/api/echo", content=payload)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == payload
    assert events == [("echo", payload)]


@pytest.mark.timeout(20)
async def test_route_templates_constraints_and_methods(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/items/42")).text == "GET item 42"
    assert (await client.delete("/api/ITEMS/7")).text == "DELETE item 7"  # routes match case-insensitively
    assert (await client.get("/api/items/abc")).status_code == 404  # {id:int}
    assert (await client.put("/api/items/42")).status_code == 404  # method not allowed: 404, as in Azure
    assert (await client.post("/api/hello/ada")).status_code == 404


@pytest.mark.timeout(20)
async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/nothing-here")).status_code == 404
    assert (await client.get("/hello/ada")).status_code == 404  # outside the route prefix


@pytest.mark.timeout(20)
async def test_function_key_is_enforced_for_function_level_routes(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    assert (await client.get("/api/secret")).status_code == 401
    assert (await client.get("/api/secret", params={"code": "wrong"})).status_code == 401
    by_query = await client.get("/api/secret", params={"code": "k3y-for-tests"})
    by_header = await client.get("/api/secret", headers={"x-functions-key": "k3y-for-tests"})
    anonymous = await client.get("/api/hello/ada")

    assert (by_query.status_code, by_query.text) == (200, "the function ran")
    assert by_header.status_code == 200
    assert anonymous.status_code == 200
    host_logs = [r.getMessage() for r in caplog.records if r.name.startswith("local.host")]
    assert host_logs
    assert not [line for line in host_logs if "k3y-for-tests" in line]


@pytest.mark.timeout(20)
async def test_function_exception_is_a_500_that_does_not_leak(
    client: httpx.AsyncClient, http_host: LocalFunctionsHost, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    response = await client.get("/api/boom")

    assert response.status_code == 500
    assert tiny_app.SECRET_TEXT not in response.text
    assert "SecretFailure" not in response.text
    assert http_host.stats["boom"].failures == 1
    assert "Executed 'boom' (Failed, SecretFailure" in caplog.text


@pytest.mark.timeout(20)
async def test_without_a_key_setting_function_routes_are_open(events: Events) -> None:
    host = LocalFunctionsHost(tiny_app.build_app(events), {}, functions=["secret"])
    async with host, httpx.AsyncClient(timeout=10) as session:
        assert (await session.get(f"{host.http_url}/api/secret")).status_code == 200


# -- timers ----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_timer_fires_on_its_resolved_schedule_when_the_clock_advances(events: Events) -> None:
    clock = ManualClock(START)
    settings = {"TINY_SCHEDULE": "0 */5 * * * *"}
    async with LocalFunctionsHost(tiny_app.build_app(events), settings, clock=clock, functions=["tick"]) as host:
        assert host.functions["tick"].bindings[0]["schedule"] == "0 */5 * * * *"

        fired = await host.advance_clock(to=datetime(2024, 1, 1, 0, 16, tzinfo=UTC))
        assert [when.minute for _, when in fired] == [5, 10, 15]
        assert events == [("tick", False)] * 3
        assert clock.now() == datetime(2024, 1, 1, 0, 16, tzinfo=UTC)

        assert await host.advance_clock(to=datetime(2024, 1, 1, 0, 19, 59, tzinfo=UTC)) == []
        fired = await host.advance_clock(to=datetime(2024, 1, 1, 0, 20, tzinfo=UTC))
        assert fired == [("tick", datetime(2024, 1, 1, 0, 20, tzinfo=UTC))]
        assert host.stats["tick"].invocations == 4


@pytest.mark.timeout(20)
async def test_fire_timer_runs_it_now(events: Events) -> None:
    settings = {"TINY_SCHEDULE": "0 0 2 * * *"}
    async with LocalFunctionsHost(
        tiny_app.build_app(events), settings, clock=ManualClock(START), functions=["tick"]
    ) as host:
        assert await host.fire_timer("tick", past_due=True) is True
    assert events == [("tick", True)]


@pytest.mark.timeout(20)
async def test_run_on_startup_fires_once_when_the_host_starts(events: Events) -> None:
    async with LocalFunctionsHost(
        tiny_app.build_app(events), {}, clock=ManualClock(START), functions=["warmup"]
    ) as host:
        await host.idle()
        assert events == [("warmup", False)]
        assert await host.advance_clock(to=datetime(2024, 6, 1, tzinfo=UTC)) == []


@pytest.mark.timeout(20)
async def test_timers_follow_real_time_without_a_clock(events: Events) -> None:
    settings = {"TINY_SCHEDULE": "* * * * * *"}  # every second
    async with LocalFunctionsHost(tiny_app.build_app(events), settings, functions=["tick"]) as host:
        await host.wait_for("tick", invocations=2, timeout_s=5)
    assert events[:2] == [("tick", False), ("tick", False)]


@pytest.mark.timeout(20)
async def test_admin_endpoint_runs_a_non_http_function(events: Events) -> None:
    settings = {"TINY_SCHEDULE": "0 0 2 * * *"}
    async with LocalFunctionsHost(
        tiny_app.build_app(events), settings, clock=ManualClock(START), functions=["tick", "hello"]
    ) as host:
        async with httpx.AsyncClient(base_url=host.http_url) as session:
            assert (await session.post("/admin/functions/tick", json={"input": ""})).status_code == 202
            assert (await session.post("/admin/functions/hello", json={})).status_code == 404
        await host.idle()
    assert events == [("tick", False)]


@pytest.mark.timeout(20)
async def test_a_missing_schedule_setting_is_named() -> None:
    with pytest.raises(HostConfigError, match=r"function 'tick'.*'schedule'.*app setting 'TINY_SCHEDULE'"):
        LocalFunctionsHost(tiny_app.build_app(), {}, functions=["tick"])


@pytest.mark.timeout(20)
async def test_an_invalid_schedule_is_named() -> None:
    with pytest.raises(HostConfigError, match=r"function 'tick'.*'every five minutes'"):
        LocalFunctionsHost(tiny_app.build_app(), {"TINY_SCHEDULE": "every five minutes"}, functions=["tick"])


# -- what the host refuses -------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
async def test_unsupported_bindings_are_reported_by_function_and_type() -> None:
    with pytest.raises(UnsupportedBindingsError) as raised:
        LocalFunctionsHost(unsupported_app.build_app(), {})

    reported = {(item.function, item.binding_type) for item in raised.value.unsupported}
    assert reported == {("on_upload", "blobTrigger"), ("forward", "queue")}
    assert "on_upload: blobTrigger" in str(raised.value)


@pytest.mark.timeout(20)
async def test_allow_unsupported_skips_those_functions(caplog: pytest.LogCaptureFixture) -> None:
    async with LocalFunctionsHost(unsupported_app.build_app(), {}, allow_unsupported=True) as host:
        assert set(host.functions) == {"fine"}
        async with httpx.AsyncClient(base_url=host.http_url) as session:
            assert (await session.get("/api/fine")).text == "fine"
    assert "Skipping function on_upload: blobTrigger" in caplog.text


@pytest.mark.timeout(20)
async def test_an_app_can_be_indexed_only_once() -> None:
    app = tiny_app.build_app()
    LocalFunctionsHost(app, {}, functions=["hello"])
    with pytest.raises(HostConfigError, match="only once"):
        LocalFunctionsHost(app, {}, functions=["hello"])


@pytest.mark.timeout(20)
async def test_a_missing_service_bus_connection_is_named() -> None:
    with pytest.raises(HostConfigError, match=r"'TINY_SERVICEBUS'.*'TINY_SERVICEBUS__fullyQualifiedNamespace'"):
        LocalFunctionsHost(tiny_app.build_app(), {"TINY_QUEUE": "q"}, functions=["consume"])


# -- the CLI ---------------------------------------------------------------------------------------------------


async def _read_line(stream: asyncio.StreamReader, matches: Callable[[str], bool]) -> str:
    while True:
        raw = await asyncio.wait_for(stream.readline(), timeout=15)
        if not raw:
            raise AssertionError("host exited before printing the expected line")
        line = raw.decode()
        if matches(line):
            return line


@pytest.mark.timeout(30)
async def test_cli_serves_the_app_and_shuts_down_on_sigterm(tmp_path: Path) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": {"TINY_SCHEDULE": "0 0 2 * * *"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local.host",
        "--app",
        "tests.e2e.apps.tiny_app:app",
        "--port",
        "0",
        "--settings",
        str(settings_file),
        "--functions",
        "hello",
        "tick",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        hello_line = await _read_line(process.stdout, lambda line: line.startswith("  hello:"))
        tick_line = await _read_line(process.stdout, lambda line: line.startswith("  tick:"))
        match = re.search(r"\[GET\] (http://127\.0\.0\.1:\d+)/api/hello/\{name\}", hello_line)
        assert match, hello_line
        assert tick_line.strip() == "tick: timerTrigger"

        async with httpx.AsyncClient(timeout=10) as session:
            response = await session.get(f"{match.group(1)}/api/hello/cli")
        assert response.status_code == 200
        assert response.json()["name"] == "cli"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=15)
    assert returncode == 0


# -- Service Bus queue triggers (through the real SDK against the local broker) ---------------------------------


async def _send(connection_string: str, queue: str, *messages: ServiceBusMessage) -> None:
    sb_client = ServiceBusClient.from_connection_string(connection_string)
    async with sb_client, sb_client.get_queue_sender(queue) as sender:
        await sender.send_messages(list(messages))


async def _eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll state the broker owns (its thread settles asynchronously to the SDK call returning)."""
    await eventually(condition, timeout_s, what="the broker's state")


def _service_bus_host(
    broker: LocalServiceBusBroker, events: Events, host_json: dict[str, Any] | None = None
) -> LocalFunctionsHost:
    settings = {"TINY_QUEUE": "tiny", "TINY_SERVICEBUS": broker.connection_string}
    return LocalFunctionsHost(
        tiny_app.build_app(events), settings, functions=["consume"], host_json=host_json, receive_wait_s=0.2
    )


@pytest.mark.timeout(60)
async def test_service_bus_message_is_delivered_to_the_trigger_and_completed(
    servicebus_broker_factory: BrokerFactory, events: Events
) -> None:
    broker = servicebus_broker_factory(queues=["tiny"], max_delivery_count=3)
    async with _service_bus_host(broker, events) as host:
        await _send(
            broker.connection_string,
            "tiny",
            ServiceBusMessage("hello", message_id="m-1", application_properties={"kind": "greeting"}),
        )
        await host.wait_for("consume", invocations=1, timeout_s=20)
        await _eventually(lambda: broker.stats["tiny"].get("completed") == 1)

    assert events == [("consume", ("m-1", "hello", 1, {"kind": "greeting"}))]
    assert host.stats["consume"].failures == 0
    assert broker.queue_depth("tiny") == 0
    assert broker.dead_letters("tiny") == []


@pytest.mark.timeout(60)
async def test_failing_message_is_abandoned_redelivered_then_dead_lettered(
    servicebus_broker_factory: BrokerFactory, events: Events
) -> None:
    broker = servicebus_broker_factory(queues=["tiny"], max_delivery_count=3)
    async with _service_bus_host(broker, events) as host:
        await _send(broker.connection_string, "tiny", ServiceBusMessage("fail please", message_id="m-bad"))
        await host.wait_for("consume", invocations=3, timeout_s=30)
        await _eventually(lambda: len(broker.dead_letters("tiny")) == 1)
        # A fourth delivery of m-bad would come before this later message (lower sequence number) is done.
        await _send(broker.connection_string, "tiny", ServiceBusMessage("after", message_id="m-after"))
        await _eventually(lambda: broker.stats["tiny"].get("completed") == 1)

    deliveries = [payload for kind, payload in events if kind == "consume"]
    assert [(message_id, count) for message_id, _, count, _ in deliveries] == [
        ("m-bad", 1),
        ("m-bad", 2),
        ("m-bad", 3),
        ("m-after", 1),
    ]
    assert host.stats["consume"].failures == 3
    assert [entry["message_id"] for entry in broker.dead_letters("tiny")] == ["m-bad"]
    assert broker.stats["tiny"].get("completed", 0) == 1  # m-after only: m-bad was never completed


@pytest.mark.timeout(60)
async def test_concurrency_is_bounded_and_shutdown_lets_in_flight_calls_finish(
    servicebus_broker_factory: BrokerFactory, events: Events
) -> None:
    broker = servicebus_broker_factory(queues=["tiny"], max_delivery_count=3)
    host_json = {"extensions": {"serviceBus": {"maxConcurrentCalls": 2}}}
    async with _service_bus_host(broker, events, host_json) as host:
        await _send(
            broker.connection_string, "tiny", *(ServiceBusMessage(f"slow {i}", message_id=f"s-{i}") for i in range(5))
        )
        # Stop once the fifth has started (each runs 0.4 s): stopping must let it finish and complete it.
        await _eventually(lambda: sum(1 for kind, _ in events if kind == "consume") == 5)

    assert host.stats["consume"].invocations == 5
    assert max(count for kind, count in events if kind == "running") == 2
    assert broker.stats["tiny"].get("completed") == 5
    assert broker.queue_depth("tiny") == 0


@pytest.mark.timeout(60)
async def test_lock_is_renewed_while_a_long_invocation_runs(
    servicebus_broker_factory: BrokerFactory, events: Events
) -> None:
    # AutoLockRenewer polls once a second and renews within ~75% of the lock: a 4 s lock is the shortest
    # it keeps reliably (Azure's minimum is 5 s).
    broker = servicebus_broker_factory(queues=["tiny"], max_delivery_count=3, lock_duration_s=4.0)
    async with _service_bus_host(broker, events) as host:
        await _send(broker.connection_string, "tiny", ServiceBusMessage("hold 5", message_id="long"))
        await host.wait_for("consume", invocations=1, timeout_s=20)
        await _eventually(lambda: broker.stats["tiny"].get("completed") == 1)

    assert [payload[2] for kind, payload in events if kind == "consume"] == [1]  # never redelivered
    assert broker.stats["tiny"].get("lock_expired", 0) == 0
