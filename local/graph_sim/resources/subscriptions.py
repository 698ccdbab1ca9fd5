"""/subscriptions for change notifications on /users: create (with the validation handshake), list, get,
renew (PATCH), delete and reauthorize. Delivery lives in local/graph_sim/notifications.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from local.graph_sim.clock import parse_dt
from local.graph_sim.context import SimContext
from local.graph_sim.errors import GraphError, not_found
from local.graph_sim.messages import SimRequest, SimResponse, empty_response, json_response
from local.graph_sim.notifications import (
    MAX_USER_LIFETIME,
    TLS_VERSIONS,
    USER_CHANGE_TYPES,
    NotificationHub,
    Subscription,
    check_endpoint_url,
)
from local.graph_sim.resources.common import json_body, metadata
from local.graph_sim.router import Router

MAX_CLIENT_STATE = 128
BAD_PAYLOAD = (
    "Could not process subscription creation payload. Are all property names spelled and camelCased properly? "
    "Also are the dateTimeOffset properties in a valid Internet Date and Time format?"
)
IMMUTABLE = ("resource", "changeType", "clientState", "lifecycleNotificationUrl", "includeResourceData")


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def _hub(ctx: SimContext) -> NotificationHub:
    assert ctx.notifications is not None, "the simulator wires a NotificationHub into the context"
    return ctx.notifications


def _require(ctx: SimContext, subscription_id: str) -> Subscription:
    sub = _hub(ctx).get(subscription_id)
    if sub is None:
        raise not_found(subscription_id)
    return sub


def _expiration(ctx: SimContext, value: Any) -> datetime:
    if not isinstance(value, str):
        raise _invalid(BAD_PAYLOAD)
    try:
        moment = parse_dt(value)
    except ValueError:
        raise _invalid(BAD_PAYLOAD) from None
    now = ctx.clock.now()
    if moment <= now:
        raise _invalid("Subscription expiration can only be in the future.")
    if moment - now > MAX_USER_LIFETIME:
        # Graph has answered this with code ExtensionError (microsoft-graph-docs-contrib issue #7726).
        limit = int(MAX_USER_LIFETIME.total_seconds() // 60)
        raise GraphError(400, "ExtensionError", f"Subscription expiration can only be {limit} minutes in the future.")
    return moment


def _resource(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid(BAD_PAYLOAD)
    if value.strip().strip("/").lower() != "users":
        raise _invalid(f"Resource '{value}' is not supported by the simulator: subscribe to '/users'.")
    return value


def _change_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(BAD_PAYLOAD)
    parts = tuple(part.strip() for part in value.split(","))
    for part in parts:
        if part not in USER_CHANGE_TYPES:
            raise _invalid(
                f"ChangeType '{part}' is not supported for resource 'users'. Supported change types are: "
                f"{', '.join(USER_CHANGE_TYPES)}."
            )
    return tuple(dict.fromkeys(parts))


def _client_state(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(BAD_PAYLOAD)
    if len(value) > MAX_CLIENT_STATE:
        raise _invalid(f"The clientState cannot be longer than {MAX_CLIENT_STATE} characters.")
    return value


async def create_subscription(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    hub = _hub(ctx)
    body = json_body(req)
    missing = [k for k in ("changeType", "notificationUrl", "resource", "expirationDateTime") if k not in body]
    if missing:
        raise _invalid(BAD_PAYLOAD)
    resource = _resource(body["resource"])
    change_types = _change_types(body["changeType"])
    expiration = _expiration(ctx, body["expirationDateTime"])
    client_state = _client_state(body.get("clientState"))
    notification_url = check_endpoint_url(body["notificationUrl"], "notificationUrl")
    lifecycle_url = body.get("lifecycleNotificationUrl")
    if lifecycle_url is not None:
        lifecycle_url = check_endpoint_url(lifecycle_url, "lifecycleNotificationUrl")
    tls = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise _invalid(f"Invalid latestSupportedTlsVersion '{tls}'.")
    if body.get("includeResourceData"):
        raise _invalid("Rich notifications (includeResourceData) are not supported for resource 'users'.")
    hub.check_quota()
    await hub.validate_endpoint(notification_url)
    if lifecycle_url is not None and lifecycle_url != notification_url:
        await hub.validate_endpoint(lifecycle_url)
    sub = hub.add(
        Subscription(
            id=str(uuid.uuid4()),
            resource=resource,
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url,
            client_state=client_state,
            expiration=expiration,
            latest_supported_tls_version=tls,
        )
    )
    return json_response({"@odata.context": metadata(req, "subscriptions/$entity"), **sub.to_graph()}, 201)


def list_subscriptions(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    value = [sub.to_graph() for sub in _hub(ctx).live()]
    return json_response({"@odata.context": metadata(req, "subscriptions"), "value": value})


def get_subscription(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    sub = _require(ctx, params["id"])
    return json_response({"@odata.context": metadata(req, "subscriptions/$entity"), **sub.to_graph()})


def renew_subscription(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    sub = _require(ctx, params["id"])
    body = json_body(req)
    for key in IMMUTABLE:
        if key in body:
            raise _invalid(f"Property '{key}' cannot be changed on an existing subscription; recreate it instead.")
    if "expirationDateTime" not in body:
        raise _invalid(BAD_PAYLOAD)
    sub.expiration = _expiration(ctx, body["expirationDateTime"])
    sub.reauthorization_required = False
    return json_response({"@odata.context": metadata(req, "subscriptions/$entity"), **sub.to_graph()})


def delete_subscription(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    if not _hub(ctx).remove(params["id"]):
        raise not_found(params["id"])
    return empty_response(204)


def reauthorize_subscription(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    sub = _require(ctx, params["id"])
    sub.reauthorization_required = False
    return empty_response(204)


def register(router: Router) -> None:
    router.add("POST", "/subscriptions", create_subscription)
    router.add("GET", "/subscriptions", list_subscriptions)
    router.add("GET", "/subscriptions/{id}", get_subscription)
    router.add("PATCH", "/subscriptions/{id}", renew_subscription)
    router.add("DELETE", "/subscriptions/{id}", delete_subscription)
    router.add("POST", "/subscriptions/{id}/reauthorize", reauthorize_subscription)
