"""Route templates ("/users/{id}/assignLicense") to handlers; a new resource is one module with register()."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from local.graph_sim.messages import SimRequest, SimResponse

if TYPE_CHECKING:
    from local.graph_sim.context import SimContext

HandlerResult = Union[SimResponse, Awaitable[SimResponse]]  # noqa: UP007
Handler = Callable[["SimContext", SimRequest, dict[str, str]], HandlerResult]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    segments: tuple[str, ...]
    handler: Handler

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def literal_count(self) -> int:
        return sum(1 for segment in self.segments if not segment.startswith("{"))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(self.segments, parts, strict=True):
            if segment.startswith("{"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif segment.lower() != part.lower():
                return None
        return params


@dataclass(frozen=True)
class RouteMatch:
    route: Route | None
    params: dict[str, str]
    path_known: bool  # some route has this path, perhaps with another method


def split_path(path: str) -> list[str]:
    return [part for part in path.strip("/").split("/")]


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        route = Route(method.upper(), template, tuple(split_path(template)), handler)
        self._routes.append(route)
        # Literal segments win over parameters: /users/delta before /users/{id}.
        self._routes.sort(key=lambda r: (-r.literal_count, len(r.segments)))

    def resolve(self, method: str, path: str) -> RouteMatch:
        parts = split_path(path)
        path_known = False
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method.upper():
                return RouteMatch(route, params, True)
            path_known = True
        return RouteMatch(None, {}, path_known)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)
