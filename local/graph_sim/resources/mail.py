"""sendMail: accepted (202) into the simulator's outbox; nothing is delivered."""

from __future__ import annotations

import copy

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.errors import GraphError
from local.graph_sim.messages import SimRequest, SimResponse, empty_response
from local.graph_sim.resources.common import json_body
from local.graph_sim.router import Router


def send_mail(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    sender = ctx.store.find_user(params["id"])
    if sender is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{params['id']}' is invalid.")
    # Action parameter names are case-insensitive at Graph: msgraph-sdk sends "Message"/"SaveToSentItems".
    body = {key[:1].lower() + key[1:]: value for key, value in json_body(req).items()}
    message = body.get("message")
    if not isinstance(message, dict):
        raise GraphError(400, "ErrorInvalidRequest", "The 'message' parameter is required for sendMail.")
    recipients = [
        *(message.get("toRecipients") or []),
        *(message.get("ccRecipients") or []),
        *(message.get("bccRecipients") or []),
    ]
    if not message.get("toRecipients"):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is required, but none were found.")
    for recipient in recipients:
        address = (recipient.get("emailAddress") or {}).get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or "@" not in address:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
            )
    ctx.outbox.append(
        {
            "sender": sender.get("userPrincipalName") or sender["id"],
            "senderId": sender["id"],
            "message": copy.deepcopy(message),
            "saveToSentItems": body.get("saveToSentItems", True),
            "received_at": iso_z(ctx.clock.now()),
        }
    )
    return empty_response(202)


def register(router: Router) -> None:
    router.add("POST", "/users/{id}/sendMail", send_mail)
