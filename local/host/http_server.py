"""HTTP triggers on aiohttp: Functions route templates, auth levels, and HttpRequest/HttpResponse mapping."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict

from .invocation import InvocationResult
from .metadata import HTTP_METHODS, FunctionSpec, HttpTriggerSpec

log = logging.getLogger("local.host.http")

KEY_SETTING = "LOCAL_HOST_FUNCTION_KEY"
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's default request size limit
_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)*(\?)?\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
}
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})

Invoke = Callable[[FunctionSpec, Any], Awaitable[InvocationResult]]
AdminInvoke = Callable[[str, bytes], Awaitable[bool]]


@dataclass(frozen=True)
class CompiledRoute:
    spec: FunctionSpec
    trigger: HttpTriggerSpec
    pattern: re.Pattern[str]
    literal_segments: int
    catch_all: bool

    def allows(self, method: str) -> bool:
        return self.trigger.methods is None or method.upper() in self.trigger.methods


def compile_route(spec: FunctionSpec) -> CompiledRoute:
    """An ASP.NET-style route template (`items/{id:int}`, `{name?}`, `{*rest}`) as a case-insensitive regex."""
    trigger = spec.trigger
    assert isinstance(trigger, HttpTriggerSpec)
    parts: list[str] = []
    literals = 0
    catch_all = False
    for index, segment in enumerate(trigger.route.split("/") if trigger.route else []):
        separator = "/" if index else ""
        match = _PARAMETER.fullmatch(segment)
        if match is None:
            literals += 1
            parts.append(re.escape(separator) + _literal_segment(segment))
            continue
        star, name, constraint, optional = match.groups()
        if star:
            catch_all = True
            parts.append(f"(?:{re.escape(separator)}(?P<{name}>.*))?")
            continue
        body = _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
        piece = f"{re.escape(separator)}(?P<{name}>{body})"
        parts.append(f"(?:{piece})?" if optional else piece)
    pattern = re.compile("".join(parts) + "/?", re.IGNORECASE)
    return CompiledRoute(spec, trigger, pattern, literals, catch_all)


def _literal_segment(segment: str) -> str:
    """A segment that may mix literals and parameters (`file.{ext}`)."""
    out: list[str] = []
    position = 0
    for match in _PARAMETER.finditer(segment):
        out.append(re.escape(segment[position : match.start()]))
        out.append(f"(?P<{match.group(2)}>[^/]+?)")
        position = match.end()
    out.append(re.escape(segment[position:]))
    return "".join(out)


class _PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: `?code=` carries the function key."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s -> %s (%.0f ms)", request.method, request.path, response.status, time * 1000)


class HttpTriggerServer:
    """Serves every HTTP-triggered function under /<routePrefix>/<route> on 127.0.0.1."""

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        invoke: Invoke,
        *,
        route_prefix: str,
        function_key: str | None,
        admin_invoke: AdminInvoke | None = None,
    ) -> None:
        self._routes = sorted(
            (compile_route(spec) for spec in functions if isinstance(spec.trigger, HttpTriggerSpec)),
            key=lambda r: (r.catch_all, -r.literal_segments, -len(r.trigger.route)),
        )
        self._invoke = invoke
        self._admin_invoke = admin_invoke
        self._prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self._key = function_key
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def routes(self) -> list[CompiledRoute]:
        return list(self._routes)

    def url_for(self, route: CompiledRoute, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{self._prefix}/{route.trigger.route}"

    async def start(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app,
            access_log_class=_PathOnlyAccessLogger,
            access_log=logging.getLogger("local.host.access"),
            shutdown_timeout=10.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self._admin_invoke is not None and request.method == "POST" and path.startswith("/admin/functions/"):
            return await self._admin(request, path.removeprefix("/admin/functions/"))
        if self._prefix:
            if not (path == self._prefix or path.startswith(self._prefix + "/")):
                return web.Response(status=404)
            path = path[len(self._prefix) :]
        path = path.lstrip("/")
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            # A wrong method is not a match: the Functions host answers 404, not 405.
            if match is None or not route.allows(request.method):
                continue
            if not self._authorized(request, route.trigger.auth_level):
                return web.Response(status=401)
            params = {k: v for k, v in match.groupdict().items() if v is not None}
            return await self._call(route.spec, request, params)
        return web.Response(status=404)

    def _authorized(self, request: web.Request, auth_level: str) -> bool:
        if auth_level == "anonymous" or not self._key:
            return True
        presented = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return hmac.compare_digest(presented.encode(), self._key.encode())

    async def _call(self, spec: FunctionSpec, request: web.Request, route_params: dict[str, str]) -> web.Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        for name, value in request.query.items():
            params.setdefault(name, value)
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=headers,
            params=params,
            route_params=route_params,
            body=await request.read(),
        )
        result = await self._invoke(spec, http_request)
        if not result.ok:
            return web.Response(status=500, text="Internal Server Error")
        return to_aiohttp_response(spec.name, result.value)

    async def _admin(self, request: web.Request, name: str) -> web.Response:
        """Core Tools' `POST /admin/functions/<name>` to run a non-HTTP function by hand."""
        if not self._authorized(request, "admin"):
            return web.Response(status=401)
        assert self._admin_invoke is not None
        body = await request.read()
        try:
            found = await self._admin_invoke(name, body)
        except ValueError:
            return web.Response(status=400)
        return web.Response(status=202 if found else 404)


def to_aiohttp_response(function_name: str, value: Any) -> web.Response:
    """What the worker makes of an HTTP function's return value."""
    if isinstance(value, func.HttpResponse):
        headers: CIMultiDict[str] = CIMultiDict()
        for name, header_value in value.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                headers.add(name, header_value)
        if "content-type" not in headers:
            mimetype = value.mimetype
            headers["Content-Type"] = (
                f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            )
        return web.Response(status=value.status_code, headers=headers, body=value.get_body())
    if isinstance(value, str | bytes):
        body = value.encode() if isinstance(value, str) else value
        return web.Response(status=200, body=body, headers={"Content-Type": "text/plain; charset=utf-8"})
    if value is None:
        return web.Response(status=204)
    log.error("'%s' returned %s, which is not an HttpResponse", function_name, type(value).__name__)
    return web.Response(status=500, text="Internal Server Error")


def methods_label(trigger: HttpTriggerSpec) -> str:
    return ",".join(trigger.methods or HTTP_METHODS)
