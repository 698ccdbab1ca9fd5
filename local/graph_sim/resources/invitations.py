"""POST /invitations (api-reference/v1.0/api/invitation-post.md, resources/invitation.md,
resources/invitedusermessageinfo.md): invite an external user, or send the invitation again to one that exists.

Every accepted request is recorded in the simulator's invitation log (`GraphSimulator.invitations`, like the mail
outbox): what was asked, for which user, and whether Graph would have mailed it (`messageSent`). Nothing is
delivered. The answer is Microsoft's invitation shape (201 Created), `inviteRedeemUrl` included.

What the docs state: `invitedUserEmailAddress` and `inviteRedirectUrl` are required; `sendInvitationMessage`
defaults to false; a new address creates a Guest user (PendingAcceptance); `resetRedemption: true` needs
`invitedUser.id` and resets a redeemed guest (User.ReadWrite.All, contract_permissions.py). What they leave open,
and how the simulator models it (docs/stale-guests.md, "Re-invite before purge"):
- an address of a guest that exists and has not redeemed: the same user is answered (`invitedUser.id`) and the
  invitation mailed again when `sendInvitationMessage` is true; whether `externalUserStateChangeDateTime` moves is
  played both ways (contract_queries.INVITATION_RESEND_DATES, `sim.invitation_resend_date`; default: kept);
- an address of a user that has redeemed (or a member), without resetRedemption: 201 with status `Completed`,
  nothing mailed;
- the error codes of a refused request (400 `BadRequest` here).
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from local.graph_sim.clock import iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.errors import GraphError
from local.graph_sim.messages import SimRequest, SimResponse, json_response
from local.graph_sim.resources.common import json_body
from local.graph_sim.router import Router
from local.graph_sim.store import pending_guest

Json = dict[str, Any]

FORBIDDEN_IN_ADDRESS = re.compile(r"[~!#$%^&*()+=\[\]{}\\/|;:\"<>?,]")
"""resources/invitation.md, invitedUserEmailAddress: characters not permitted in the address."""


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _address(body: Json) -> str:
    address = body.get("invitedUserEmailAddress")
    if not isinstance(address, str) or not address.strip():
        raise _bad("Invalid request: invitedUserEmailAddress is required.")
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or "." not in domain or FORBIDDEN_IN_ADDRESS.search(local):
        raise _bad(f"The invited user email address '{address}' is invalid.")
    return address.strip()


def _redirect(body: Json) -> str:
    url = body.get("inviteRedirectUrl")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise _bad("Invalid request: inviteRedirectUrl is required and must be an absolute URL.")
    return url


def _find_by_address(ctx: SimContext, address: str) -> Json | None:
    wanted = address.lower()
    for user_id in ctx.store.sorted_user_ids():
        user = ctx.store.users[user_id]
        addresses = [user.get("mail"), *(user.get("otherMails") or [])]
        if any(isinstance(a, str) and a.lower() == wanted for a in addresses):
            return user
    return None


def _new_guest(ctx: SimContext, address: str, display_name: str | None) -> Json:
    """The Guest user an invitation to a new address creates (as GraphSimulator.invite_guest does)."""
    tenant_domain = str(ctx.store.tenant.get("defaultDomain", "contoso.onmicrosoft.com"))
    user = pending_guest(address, display_name, tenant_domain, iso_z(ctx.clock.now()))
    ctx.store.add_user(user)
    return user


def _reset(ctx: SimContext, body: Json, address: str) -> Json:
    invited = body.get("invitedUser")
    user_id = invited.get("id") if isinstance(invited, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise _bad("Invalid request: invitedUser.id is required when resetRedemption is true.")
    user = ctx.store.users.get(user_id)
    if user is None:
        raise GraphError(404, "Request_ResourceNotFound", f"Resource '{user_id}' does not exist.")
    stamp = iso_z(ctx.clock.now())
    return ctx.store.update_user(
        user_id, {"mail": address, "externalUserState": "PendingAcceptance", "externalUserStateChangeDateTime": stamp}
    )


def create_invitation(ctx: SimContext, req: SimRequest, params: dict[str, str]) -> SimResponse:
    body = json_body(req)
    address, redirect = _address(body), _redirect(body)
    send = bool(body.get("sendInvitationMessage", False))
    reset = bool(body.get("resetRedemption", False))
    given = body.get("invitedUserMessageInfo")
    info: Json = given if isinstance(given, dict) else {}
    with ctx.store.lock:
        if reset:
            user, created = _reset(ctx, body, address), False
        else:
            found = _find_by_address(ctx, address)
            created = found is None
            user = found or _new_guest(ctx, address, body.get("invitedUserDisplayName"))
        pending = user.get("userType") == "Guest" and user.get("externalUserState") == "PendingAcceptance"
        status = "PendingAcceptance" if pending else "Completed"
        mailed = send and pending
        if mailed and not created and not reset and ctx.store.invitation_resend_date == "moved":
            user["externalUserStateChangeDateTime"] = iso_z(ctx.clock.now())  # contract_queries: either way
            ctx.store.bump(user["id"])
        invitation_id = str(uuid.uuid4())
        ctx.invitations.append(
            {
                "invitationId": invitation_id,
                "invitedUserId": user["id"],
                "invitedUserEmailAddress": address,
                "inviteRedirectUrl": redirect,
                "sendInvitationMessage": send,
                "messageSent": mailed,
                "resetRedemption": reset,
                "customizedMessageBody": info.get("customizedMessageBody"),
                "messageLanguage": info.get("messageLanguage"),
                "ccRecipients": info.get("ccRecipients") or [],
                "createdUser": created,
                "status": status,
                "received_at": iso_z(ctx.clock.now()),
            }
        )
    tenant = str(ctx.store.tenant.get("id", ""))
    redeem = (
        "https://invitations.microsoft.com/redeem/?tenant="
        f"{tenant}&user={invitation_id}&ticket={secrets.token_urlsafe(24)}&ver=2.0"
    )
    answer = {
        "@odata.context": f"{req.base_url}/$metadata#invitations/$entity",
        "id": invitation_id,
        "inviteRedeemUrl": f"https://login.microsoftonline.com/redeem?rd={quote(redeem, safe='')}",
        "invitedUserDisplayName": body.get("invitedUserDisplayName"),
        "invitedUserType": body.get("invitedUserType") or "Guest",
        "invitedUserEmailAddress": address,
        "sendInvitationMessage": send,
        "resetRedemption": reset,
        "inviteRedirectUrl": redirect,
        "status": status,
        "invitedUserMessageInfo": {
            "messageLanguage": info.get("messageLanguage"),
            "customizedMessageBody": info.get("customizedMessageBody"),
            "ccRecipients": info.get("ccRecipients") or [{"emailAddress": {"name": None, "address": None}}],
        },
        "invitedUser": {"id": user["id"], "userPrincipalName": user.get("userPrincipalName")},
    }
    return json_response(answer, 201)


def register(router: Router) -> None:
    router.add("POST", "/invitations", create_invitation)
