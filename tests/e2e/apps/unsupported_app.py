"""An app using bindings the local host does not serve: the host must name them and refuse to start."""

from __future__ import annotations

import azure.functions as func


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="fine")
    def fine(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("fine")

    @app.blob_trigger(arg_name="blob", path="uploads/{name}", connection="STORAGE")
    def on_upload(blob: func.InputStream) -> None:
        return None

    @app.queue_output(arg_name="out", queue_name="outbox", connection="STORAGE")
    @app.route(route="forward")
    def forward(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        out.set("x")
        return func.HttpResponse("queued")

    return app


app = build_app()
