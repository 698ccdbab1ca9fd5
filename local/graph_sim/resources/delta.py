"""/users/delta: a full round (pages, then a deltaLink), then rounds of what changed since a deltaLink.

Tokens are opaque to clients but carry the change version and the issue time on the simulator clock, so
a deltaLink older than 7 days answers 400 syncStateNotFound as Graph does for identity resources (so does
every deltaLink issued before `sim.expire_delta_links()`). Changes
made while a round is paged may be reported twice (Graph's delivery is at-least-once too).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from local.graph_sim.clock import iso_z, parse_dt
from local.graph_sim.context import SimContext
from local.graph_sim.errors import GraphError
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.odata import decode_token, encode_token, parse_select
from local.graph_sim.resources.common import metadata, user_view
from local.graph_sim.router import Router

PAGE_SIZE = 100
TOKEN_LIFETIME = timedelta(days=7)
DELTA_EXPIRY_VARIANTS = ("syncStateNotFound", "syncReset", "badRequest")
"""How a deltaLink Graph no longer serves answers (delta-query-overview.md leaves room): the documented expiry
(400 syncStateNotFound), a synchronization reset (410 Gone with a Location to restart the full sync from), and
another 400 (Graph's wording varies). `sim.expire_delta_links(variant)` picks one; the backstop must resync."""


def _no_longer_served(req: SimRequest, variant: str, select_text: str | None) -> GraphError:
    if variant == "syncReset":
        restart = f"{req.base_url}/users/delta" + (f"?$select={select_text}" if select_text else "")
        return GraphError(
            410,
            "resyncRequired",
            "The sync state was reset. Restart the synchronization from the Location given.",
            headers={"Location": restart},
        )
    if variant == "badRequest":
        return GraphError(400, "Request_BadRequest", "Invalid delta token.")
    return GraphError(
        400,
        "syncStateNotFound",
        "The sync state for this delta token was not found or has expired. Restart the "
        "synchronization without a token (full resync).",
    )


def _page_size(req: SimRequest) -> int:
    prefer = req.header("Prefer") or ""
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "odata.maxpagesize" and value.isdigit():
            return max(1, min(int(value), 999))
    return PAGE_SIZE


def _delta_link(req: SimRequest, version: int, select_text: str | None, ctx: SimContext) -> str:
    state = {"v": version, "s": select_text, "at": iso_z(ctx.clock.now()), "e": ctx.store.delta_epoch}
    token = encode_token(state)
    return f"{req.base_url}/users/delta?$deltatoken={token}"


def users_delta(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    store = ctx.store
    store.purge_expired()
    after: str | None = None
    since: int | None = None
    if "$deltatoken" in req.query:
        raw = req.query["$deltatoken"]
        if raw.lower() == "latest":
            select_text = req.query.get("$select")
            latest = {
                "@odata.context": metadata(req, "users", parse_select(select_text)),
                "@odata.deltaLink": _delta_link(req, store.version, select_text, ctx),
                "value": [],
            }
            return json_response(latest)
        state = decode_token(raw)
        issued = parse_dt(str(state.get("at")))
        if int(state.get("e", 0)) != store.delta_epoch:  # sim.expire_delta_links(variant)
            raise _no_longer_served(req, store.delta_expiry_variant, state.get("s"))
        if ctx.clock.now() - issued > TOKEN_LIFETIME:
            raise _no_longer_served(req, "syncStateNotFound", state.get("s"))
        since, snapshot, select_text = int(state["v"]), store.version, state.get("s")
    elif "$skiptoken" in req.query:
        state = decode_token(req.query["$skiptoken"])
        since, snapshot = state.get("since"), int(state["v"])
        select_text, after = state.get("s"), state.get("a")
    else:
        snapshot, select_text = store.version, req.query.get("$select")
    select = parse_select(select_text)
    size = _page_size(req)
    if since is None:
        ids = store.sorted_user_ids(after)
    else:
        ids = sorted(uid for uid, v in store.changes.items() if v > since and (after is None or uid > after))
    chunk: list[str] = list(ids[: size + 1])
    more = len(chunk) > size
    chunk = chunk[:size]
    value: list[dict[str, Any]] = []
    for user_id in chunk:
        user = store.users.get(user_id)
        if user is not None:
            value.append(user_view(user, select))
        elif user_id in store.deleted:
            value.append({"id": user_id, "@removed": {"reason": "changed"}})
        else:
            value.append({"id": user_id, "@removed": {"reason": "deleted"}})
    body: dict[str, Any] = {"@odata.context": metadata(req, "users", select)}
    if more:
        token = encode_token({"since": since, "v": snapshot, "s": select_text, "a": chunk[-1]})
        body["@odata.nextLink"] = f"{req.base_url}/users/delta?$skiptoken={token}"
    else:
        body["@odata.deltaLink"] = _delta_link(req, snapshot, select_text, ctx)
    body["value"] = value
    return json_response(body)


def register(router: Router) -> None:
    router.add("GET", "/users/delta", users_delta)
    router.add("GET", "/users/delta()", users_delta)  # the function-call spelling msgraph-sdk uses
