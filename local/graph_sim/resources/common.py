"""Helpers shared by resource handlers: lookups that 404 the Graph way, @odata.context, projections."""

from __future__ import annotations

from typing import Any

from local.graph_sim.context import SimContext
from local.graph_sim.errors import bad_request, not_found
from local.graph_sim.messages import SimRequest
from local.graph_sim.odata import project

Json = dict[str, Any]

USER_DEFAULT_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
GROUP_DEFAULT_PROPERTIES = (
    "id",
    "displayName",
    "description",
    "groupTypes",
    "mailEnabled",
    "securityEnabled",
    "mail",
)


def metadata(req: SimRequest, fragment: str, select: list[str] | None = None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    if fragment.endswith("/$entity"):
        base = fragment[: -len("/$entity")]
        return f"{req.base_url}/$metadata#{base}{suffix}/$entity"
    return f"{req.base_url}/$metadata#{fragment}{suffix}"


def require_user(ctx: SimContext, key: str) -> Json:
    user = ctx.store.find_user(key)
    if user is None:
        raise not_found(key)
    return user


def user_view(user: Json, select: list[str] | None) -> Json:
    return project(user, select, USER_DEFAULT_PROPERTIES)


def typed_user(user: Json, select: list[str] | None = None) -> Json:
    return {"@odata.type": "#microsoft.graph.user", **user_view(user, select)}


def typed_group(group: Json, select: list[str] | None = None) -> Json:
    return {"@odata.type": "#microsoft.graph.group", **project(group, select, GROUP_DEFAULT_PROPERTIES)}


def json_body(req: SimRequest) -> Json:
    if not isinstance(req.body, dict):
        raise bad_request("Empty Payload. JSON content expected.", code="BadRequest")
    return req.body


def reference_id(body: Json) -> str:
    """The object id at the end of an "@odata.id" reference URL."""
    ref = body.get("@odata.id")
    if not isinstance(ref, str) or not ref.strip("/"):
        raise bad_request("Invalid object identifier '@odata.id'.")
    return ref.rstrip("/").rsplit("/", 1)[-1]
