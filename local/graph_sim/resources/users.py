"""/users: list with $filter/$select/$top/$count and keyset paging, get, patch, delete, and relationships."""

from __future__ import annotations

import bisect
import re
from typing import Any

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.contract_queries import (
    ADVANCED,
    COUNT_SEGMENT_WITHOUT_EVENTUAL,
    EXPIRED_PAGE_TOKEN,
    PAGE_TOKEN_LIFETIMES,
    SIGN_IN_ACTIVITY_PAGING,
    USER_ORDERBY,
    USERS,
)
from local.graph_sim.errors import GraphError, bad_request, not_found, unsupported_query
from local.graph_sim.identity import non_premium_tenant, wants_sign_in_activity
from local.graph_sim.messages import SimRequest, SimResponse, empty_response, json_response
from local.graph_sim.odata import (
    Filter,
    check_filter,
    decode_token,
    encode_token,
    parse_filter,
    parse_select,
    parse_top,
)
from local.graph_sim.resources.common import (
    json_body,
    metadata,
    reference_id,
    require_user,
    typed_group,
    typed_user,
    user_view,
)
from local.graph_sim.router import Router
from local.graph_sim.store import TenantStore
from local.graph_sim.user_index import candidate_ids

DEFAULT_PAGE = 100
MAX_PAGE = 999
READ_ONLY = {
    "id",
    "createdDateTime",
    "creationType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "signInActivity",
    "assignedLicenses",
    "licenseAssignmentStates",
    "deletedDateTime",
}
_COUNTRY = re.compile(r"[A-Z]{2}")


def is_eventual(req: SimRequest) -> bool:
    return (req.header("ConsistencyLevel") or "").strip().lower() == "eventual"


def check_user_filter(flt: Filter | None, advanced: bool) -> None:
    """The user rows of the contract table (local/graph_sim/contract_queries.py) decide."""
    check_filter(flt, USERS, resource="User", advanced=advanced)


def scan(store: TenantStore, flt: Filter | None, after: str | None, top: int) -> tuple[list[Any], bool]:
    page: list[Any] = []
    candidates = candidate_ids(store, flt)  # a createdDateTime range walks only the users inside it
    if candidates is None:
        candidates = store.sorted_user_ids(after)
    elif after is not None:
        candidates = candidates[bisect.bisect_right(candidates, after) :]
    for user_id in candidates:
        user = store.users[user_id]
        if flt is not None and not flt(user):
            continue
        if len(page) == top:
            return page, True
        page.append(user)
    return page, False


def parse_orderby(raw: str | None, flt: Filter | None, advanced: bool) -> str | None:
    """`$orderby=prop [asc|desc]` as "prop asc|desc", for the properties the contract lists
    (USER_ORDERBY); with a $filter, Graph wants an advanced query whatever the property."""
    if raw is None or not raw.strip():
        return None
    parts = raw.split()
    support = USER_ORDERBY.get(parts[0].lower())
    direction = parts[1].lower() if len(parts) > 1 else "asc"
    if support is None or len(parts) > 2 or direction not in ("asc", "desc"):
        raise unsupported_query(f"Sorting by '{raw}' is not supported.")
    if (support == ADVANCED or flt is not None) and not advanced:
        raise unsupported_query(
            f"Sorting by '{parts[0]}'{' with a filter' if flt is not None else ''} needs the ConsistencyLevel: "
            "eventual header and $count=true (advanced query)."
        )
    prop = next(name for name in SORT_KEYS if name.lower() == parts[0].lower())
    return f"{prop} {direction}"


SORT_KEYS = ("createdDateTime", "deletedDateTime", "displayName", "userPrincipalName")


def ordered(store: TenantStore, flt: Filter | None, orderby: str, offset: int, top: int) -> tuple[list[Any], bool]:
    """A page of the matches sorted by one property (nulls last), then id."""
    prop, direction = orderby.split()
    matches = [store.users[uid] for uid in candidate_ids(store, flt) or store.sorted_user_ids()]
    matches = [user for user in matches if flt is None or flt(user)]
    present = sorted((u for u in matches if u.get(prop) is not None), key=lambda u: (str(u[prop]).lower(), u["id"]))
    if direction == "desc":
        present.reverse()
    everything = present + [u for u in matches if u.get(prop) is None]
    return everything[offset : offset + top], len(everything) > offset + top


def count_matches(store: TenantStore, flt: Filter | None) -> int:
    candidates = candidate_ids(store, flt)
    users = store.users.values() if candidates is None else (store.users[uid] for uid in candidates)
    return sum(1 for user in users if flt is None or flt(user))


def list_users(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    eventual = is_eventual(req)
    token = req.query.get("$skiptoken")
    if token:
        state = decode_token(token)
        _refuse_expired(ctx, state)
        filter_text, select_text = state.get("f"), state.get("s")
        top_raw, count, after = state.get("t"), bool(state.get("c")), state.get("a")
    else:
        filter_text, select_text = req.query.get("$filter"), req.query.get("$select")
        top_raw, after = req.query.get("$top"), None
        # `$count=true` without ConsistencyLevel: eventual is silently ignored (aad-advanced-queries.md)
        count = eventual and req.query.get("$count", "").lower() == "true"
    advanced = count  # advanced query parameters: the header and $count=true, together
    flt = parse_filter(filter_text)
    check_user_filter(flt, advanced)
    select = parse_select(select_text)
    top = parse_top(top_raw, DEFAULT_PAGE, MAX_PAGE)
    if wants_sign_in_activity(select, flt.paths if flt is not None else None) and not ctx.store.entra_id_p1:
        raise non_premium_tenant()
    if select and any(name.lower() == "signinactivity" for name in select):
        paging = SIGN_IN_ACTIVITY_PAGING[ctx.store.sign_in_activity_paging]
        if top > paging.maximum and paging.refuse_above and not token:
            raise unsupported_query(f"Cannot query data for more than {paging.maximum} users at a time.")
        top = min(top, paging.maximum)
    resume = decode_token(token) if token else {}
    orderby = resume.get("o") if token else parse_orderby(req.query.get("$orderby"), flt, advanced)
    offset = int(resume.get("n", 0))
    if orderby:
        page, more = ordered(ctx.store, flt, str(orderby), offset, top)
    else:
        page, more = scan(ctx.store, flt, after, top)
    body: dict[str, Any] = {"@odata.context": metadata(req, "users", select)}
    if count:
        body["@odata.count"] = count_matches(ctx.store, flt)
    if more:
        state = {"f": filter_text, "s": select_text, "t": top_raw, "c": count, "a": page[-1]["id"]}
        state["i"] = ctx.clock.now().timestamp()  # when the link was issued (PAGE_TOKEN_LIFETIMES)
        if orderby:
            state.update(o=orderby, n=offset + len(page))
        body["@odata.nextLink"] = f"{req.base_url}/users?$skiptoken={encode_token(state)}"
    body["value"] = [user_view(user, select) for user in page]
    return json_response(body)


def _refuse_expired(ctx: SimContext, state: dict[str, Any]) -> None:
    """A page token older than the lifetime the simulator plays (contract_queries.PAGE_TOKEN_LIFETIMES)."""
    lifetime = PAGE_TOKEN_LIFETIMES[ctx.store.page_token_lifetime].seconds
    issued = state.get("i")
    if lifetime is not None and issued is not None and ctx.clock.now().timestamp() - float(issued) > lifetime:
        code, message = EXPIRED_PAGE_TOKEN
        raise GraphError(400, code, message)


def count_users(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    if not is_eventual(req):
        code, message = COUNT_SEGMENT_WITHOUT_EVENTUAL
        raise bad_request(message, code=code)
    flt = parse_filter(req.query.get("$filter"))
    check_user_filter(flt, True)  # the $count segment with the header is an advanced query
    total = sum(1 for user in ctx.store.users.values() if flt is None or flt(user))
    return SimResponse(200, str(total), {"Content-Type": "text/plain"})


def get_user(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    if wants_sign_in_activity(select) and not ctx.store.entra_id_p1:
        raise non_premium_tenant()
    body = {"@odata.context": metadata(req, "users/$entity", select), **user_view(user, select)}
    if req.query.get("$expand", "").lower() == "sponsors":
        body["sponsors"] = _sponsors(ctx, user, roles=req.roles)
    return json_response(body)


def validate_patch(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in READ_ONLY:
            raise bad_request(f"Property '{key}' is read-only and cannot be set.")
        if key == "usageLocation" and value is not None and not (isinstance(value, str) and _COUNTRY.fullmatch(value)):
            raise bad_request("Invalid value specified for property 'usageLocation' of resource 'User'.")
        if key == "accountEnabled" and not isinstance(value, bool):
            raise bad_request("Invalid value specified for property 'accountEnabled' of resource 'User'.")
        if key == "userType" and value not in ("Guest", "Member"):
            raise bad_request("Invalid value specified for property 'userType' of resource 'User'.")


def patch_user(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    body = json_body(req)
    validate_patch(body)
    ctx.store.update_user(user["id"], dict(body))
    return empty_response(204)


def delete_user(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    ctx.store.soft_delete(user["id"])
    return empty_response(204)


def revoke_sessions(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    stamp = iso_z(ctx.clock.now())
    user["signInSessionsValidFromDateTime"] = stamp
    ctx.store.revoked_sessions[user["id"]] = stamp
    return json_response({"@odata.context": metadata(req, "Edm.Boolean"), "value": True})


GROUP_READERS = frozenset(
    {
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
"""Roles that can read a group's properties; without one, a group in a user's relationships comes back with its
@odata.type and id only, every other property null (api-reference/includes/limited-info.md)."""


def _sponsors(
    ctx: SimContext, user: dict[str, Any], select: list[str] | None = None, roles: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """A user's sponsors: users and groups (user-list-sponsors.md), each typed with its @odata.type."""
    sponsors: list[dict[str, Any]] = []
    can_read_groups = bool(GROUP_READERS & (roles or frozenset()))
    for sponsor_id in user.get("sponsors") or []:
        if (person := ctx.store.users.get(sponsor_id)) is not None:
            sponsors.append(typed_user(person, select))
        elif (group := ctx.store.groups.get(sponsor_id)) is not None:
            view = typed_group(group, select)
            if not can_read_groups:  # limited information: the type and the id, nothing else
                view = {key: (value if key in ("@odata.type", "id") else None) for key, value in view.items()}
            sponsors.append(view)
    return sponsors


def list_sponsors(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    value = _sponsors(ctx, user, parse_select(req.query.get("$select")), req.roles)
    return json_response({"@odata.context": metadata(req, "directoryObjects"), "value": value})


def add_sponsor(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    sponsor_id = reference_id(json_body(req))
    if sponsor_id not in ctx.store.users and sponsor_id not in ctx.store.groups:
        raise not_found(sponsor_id)
    sponsors = user.setdefault("sponsors", [])
    if sponsor_id in sponsors:
        raise bad_request(
            "One or more added object references already exist for the following modified properties: 'sponsors'."
        )
    sponsors.append(sponsor_id)
    return empty_response(204)


def remove_sponsor(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    sponsors = user.get("sponsors") or []
    if params["sponsorId"] not in sponsors:
        raise not_found(params["sponsorId"])
    sponsors.remove(params["sponsorId"])
    return empty_response(204)


def member_of(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    user = require_user(ctx, params["id"])
    select = parse_select(req.query.get("$select"))
    value = [typed_group(group, select) for group in ctx.store.groups_of(user["id"])]
    return json_response({"@odata.context": metadata(req, "directoryObjects"), "value": value})


def create_user(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    raise GraphError(
        501, "NotImplemented", "The simulator does not create users over HTTP; use the fixture or sim API."
    )


def register(router: Router) -> None:
    router.add("GET", "/users", list_users)
    router.add("POST", "/users", create_user)
    router.add("GET", "/users/$count", count_users)
    router.add("GET", "/users/{id}", get_user)
    router.add("PATCH", "/users/{id}", patch_user)
    router.add("DELETE", "/users/{id}", delete_user)
    router.add("POST", "/users/{id}/revokeSignInSessions", revoke_sessions)
    router.add("GET", "/users/{id}/sponsors", list_sponsors)
    router.add("POST", "/users/{id}/sponsors/$ref", add_sponsor)
    router.add("DELETE", "/users/{id}/sponsors/{sponsorId}/$ref", remove_sponsor)
    router.add("GET", "/users/{id}/memberOf", member_of)
