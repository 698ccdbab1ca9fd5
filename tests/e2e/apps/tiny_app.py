"""A tiny v2-model app for the local host's tests: one function per trigger kind the host serves.

`build_app(events)` builds a fresh FunctionApp (get_functions() may be called once per app) whose functions
append what they saw to `events`; the module-level `app` is what `python -m local.host --app` loads.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func

from tests.waiting import give_way


class SecretFailure(RuntimeError):
    """Raised by the failing functions; its text must never reach an HTTP client."""


SECRET_TEXT = "db password is hunter2"
SLOW_WORK_S = 0.4
"""How long a "slow" message's work takes: the app's workload (long enough for invocations to overlap), not a
test waiting for something."""


def build_app(events: list[tuple[str, Any]] | None = None) -> func.FunctionApp:
    seen: list[tuple[str, Any]] = events if events is not None else []
    running = {"now": 0}
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="hello/{name}", methods=["GET"])
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        seen.append(("hello", req.route_params.get("name")))
        document = {
            "name": req.route_params.get("name"),
            "greeting": req.params.get("greeting", "hello"),
            "caller": req.headers.get("x-caller"),
            "url": req.url,
        }
        return func.HttpResponse(
            json.dumps(document), status_code=200, mimetype="application/json", headers={"X-Tiny": "yes"}
        )

    @app.route(route="echo", methods=["POST"])
    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        await give_way()
        seen.append(("echo", req.get_body()))
        return func.HttpResponse(req.get_body(), status_code=201, mimetype="application/octet-stream")

    @app.route(route="items/{id:int}", methods=["GET", "DELETE"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"{req.method} item {req.route_params['id']}")

    @app.route(route="secret", auth_level=func.AuthLevel.FUNCTION)
    def secret(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("the function ran")

    @app.route(route="boom")
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise SecretFailure(SECRET_TEXT)

    @app.timer_trigger(schedule="%TINY_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=False)
    def tick(timer: func.TimerRequest) -> None:
        seen.append(("tick", timer.past_due))

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
    def warmup(timer: func.TimerRequest) -> None:
        seen.append(("warmup", timer.past_due))

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%TINY_QUEUE%", connection="TINY_SERVICEBUS")
    async def consume(msg: func.ServiceBusMessage) -> None:
        body = msg.get_body().decode()
        seen.append(("consume", (msg.message_id, body, msg.delivery_count, dict(msg.application_properties))))
        if body.startswith("fail"):
            raise SecretFailure(SECRET_TEXT)
        if body.startswith("slow"):
            running["now"] += 1
            seen.append(("running", running["now"]))
            await asyncio.sleep(SLOW_WORK_S)
            running["now"] -= 1
        if body.startswith("hold "):
            await asyncio.sleep(float(body.removeprefix("hold ")))

    return app


app = build_app()
