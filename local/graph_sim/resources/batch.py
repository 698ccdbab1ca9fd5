"""POST /$batch: up to 20 inner requests, each dispatched like a top-level call (routing, counting,
faults), answered together. Requests run in order, so dependsOn is honoured; a request whose dependency
failed gets 424."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.graph_sim.context import SimContext
from local.graph_sim.errors import GraphError
from local.graph_sim.messages import JSON_CONTENT_TYPE, SimRequest, SimResponse, json_response
from local.graph_sim.router import Router

MAX_REQUESTS = 20


def _invalid(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def inner_request(outer: SimRequest, item: dict[str, Any]) -> SimRequest:
    url = item.get("url")
    method = item.get("method")
    if not isinstance(url, str) or not url or not isinstance(method, str) or not method:
        raise _invalid("Invalid batch payload format: each request needs an id, a method and a url.")
    parts = urlsplit(url)
    path = unquote(parts.path)
    for prefix in ("/v1.0", "v1.0"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
    if not path.startswith("/"):
        path = "/" + path
    # Each request carries its own headers; the envelope's (ConsistencyLevel included) do not apply to it
    # (json-batching.md, "Request format"; aad-advanced-queries.md: put ConsistencyLevel in the inner request).
    headers = {str(name).lower(): str(value) for name, value in (item.get("headers") or {}).items()}
    return SimRequest(
        method=method.upper(),
        path=path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers=headers,
        body=item.get("body"),
        base_url=outer.base_url,
        in_batch=True,
        roles=outer.roles,  # authorized with the envelope's token, each request on its own (server.dispatch)
    )


def _inner_headers(response: SimResponse) -> dict[str, str]:
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "location")}
    if response.body is not None:
        headers["Content-Type"] = "text/plain" if response.is_text else JSON_CONTENT_TYPE
    return headers


async def batch(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    body = req.body
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        raise _invalid("Invalid batch payload format.")
    items: list[Any] = body["requests"]
    if len(items) > MAX_REQUESTS:
        raise _invalid(f"Unable to handle batch request: the number of requests exceeds the limit of {MAX_REQUESTS}.")
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    if any(not isinstance(i, str) or not i for i in ids):
        raise _invalid("Invalid batch payload format: every request needs a string id.")
    if len(set(ids)) != len(ids):
        raise _invalid("Request Id must be unique within a batch request.")
    inner = [inner_request(req, item) for item in items]
    assert ctx.dispatch is not None
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for item, request in zip(items, inner, strict=True):
        failed = [d for d in item.get("dependsOn") or [] if statuses.get(d, 424) >= 400]
        if failed:
            response = SimResponse(
                424,
                {"error": {"code": "FailedDependency", "message": "Dependent request failed.", "innerError": {}}},
            )
        else:
            response = await ctx.dispatch(request)
        statuses[item["id"]] = response.status
        out: dict[str, Any] = {"id": item["id"], "status": response.status, "headers": _inner_headers(response)}
        if response.body is not None:
            out["body"] = response.body
        responses.append(out)
    return json_response({"responses": responses})


def register(router: Router) -> None:
    router.add("POST", "/$batch", batch)
