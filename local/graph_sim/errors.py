"""Graph's error envelope and the errors the handlers raise."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from local.graph_sim.clock import iso_z


class GraphError(Exception):
    """Raised by a handler; the dispatcher turns it into Graph's JSON error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str, now: datetime, client_request_id: str | None = None) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": iso_z(now).rstrip("Z"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


def not_found(key: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def unsupported_query(message: str = "Unsupported Query.") -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)
