"""/auditLogs/signIns: newest first, $filter, $top up to 1,000 (also the default), keyset paging.

Arrival lag: real sign-in logs show up minutes after the sign-in. `set_arrival_lag(sim, lag)` makes an entry
visible only once the simulator clock has passed its createdDateTime + lag (0, the default, shows everything
at once), so pollers with an overlapping window can be tested against late logs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from local.graph_sim.clock import parse_dt
from local.graph_sim.context import SimContext
from local.graph_sim.contract_queries import SIGNINS
from local.graph_sim.errors import not_found
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.odata import check_filter, decode_token, encode_token, parse_filter, parse_top
from local.graph_sim.resources.common import metadata
from local.graph_sim.router import Router
from local.graph_sim.store import signin_sort_key

MAX_PAGE = 1000
_LAG_ATTRIBUTE = "signin_arrival_lag"


def set_arrival_lag(sim: Any, lag: timedelta) -> None:
    """Sign-ins of `sim` (a GraphSimulator) become visible `lag` after they happened, on the simulator clock."""
    setattr(sim.store, _LAG_ATTRIBUTE, lag)


def _arrived(ctx: SimContext) -> Any:
    lag = getattr(ctx.store, _LAG_ATTRIBUTE, timedelta(0))
    if not lag:
        return lambda entry: True
    now = ctx.clock.now()
    return lambda entry: parse_dt(str(entry.get("createdDateTime"))) + lag <= now


def list_signins(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    token = req.query.get("$skiptoken")
    after: tuple[float, str] | None = None
    if token:
        state = decode_token(token)
        filter_text, top_raw = state.get("f"), state.get("t")
        after = (float(state["k"][0]), str(state["k"][1]))
    else:
        filter_text, top_raw = req.query.get("$filter"), req.query.get("$top")
    flt = parse_filter(filter_text)
    check_filter(flt, SIGNINS, resource="SignIn", advanced=False)  # contract_queries.py: the signIn rows
    top = parse_top(top_raw, MAX_PAGE, MAX_PAGE)
    page: list[dict[str, Any]] = []
    more = False
    arrived = _arrived(ctx)
    for entry in ctx.store.signins_after(after):
        if not arrived(entry) or (flt is not None and not flt(entry)):
            continue
        if len(page) == top:
            more = True
            break
        page.append(entry)
    body: dict[str, Any] = {"@odata.context": metadata(req, "auditLogs/signIns")}
    if more:
        state = {"f": filter_text, "t": top_raw, "k": list(signin_sort_key(page[-1]))}
        body["@odata.nextLink"] = f"{req.base_url}/auditLogs/signIns?$skiptoken={encode_token(state)}"
    body["value"] = page
    return json_response(body)


def get_signin(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    for entry in ctx.store.signins:
        if entry.get("id") == params["id"]:
            return json_response({"@odata.context": metadata(req, "auditLogs/signIns/$entity"), **entry})
    raise not_found(params["id"])


def register(router: Router) -> None:
    router.add("GET", "/auditLogs/signIns", list_signins)
    router.add("GET", "/auditLogs/signIns/{id}", get_signin)
