"""Request and response values shared by the HTTP front end, the router and $batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


@dataclass
class SimRequest:
    """One Graph call, decoded: path is relative to /v1.0 and already percent-decoded."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None
    base_url: str = ""
    in_batch: bool = False
    roles: frozenset[str] | None = None
    """The `roles` claim of the caller's verified token (None: no token was verified; nothing is granted)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class SimResponse:
    status: int
    body: Any = None  # JSON-serialisable, or str for text/plain
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return isinstance(self.body, str)


def json_response(body: Any, status: int = 200) -> SimResponse:
    return SimResponse(status=status, body=body)


def empty_response(status: int = 204) -> SimResponse:
    return SimResponse(status=status)
