"""Re-invite before purge (issue 17, item 2): a guest whose invitation was never redeemed gets it once more, at
the warning stage, before it can be disabled or deleted. Pure: which plan items are re-invited, the request
guestwarden makes, and how the outcome reads in the plan and reports.

Graph has no "resend" action: `POST /invitations` (invitation-post.md) with the guest's address and
`sendInvitationMessage: true` is how an invitation is sent again to a guest that exists and has not redeemed
(the portal's "Resend invitation" does the same for PendingAcceptance guests, add-users-administrator.md).
`resetRedemption` is NOT used: it is documented for guests who already redeemed (a new sign-in identity), and
needs User.ReadWrite.All where a plain invitation needs User.Invite.All. What the docs leave open (that Graph
answers with the existing user rather than a new one, how long the message may be, whether the resend moves
`externalUserStateChangeDateTime`) is listed in docs/stale-guests.md, "Re-invite before purge".

Like a warning mail, an invitation mail cannot be taken back and the API gives no idempotency key: a timeout or
a 5xx leaves "sent or not?" open, and the service never sends it again in the same lifecycle episode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from shared.domain.stale import Action

REINVITE_EVIDENCE = "reinvite"
"""The evidence key of a plan item that is (or would be) re-invited: its `ReinviteState`, then its outcome."""

DEFAULT_REDIRECT_URL = "https://myapps.microsoft.com"
"""Where Graph sends the guest after redeeming, when STALE_REINVITE_REDIRECT_URL is not set. infra/ sets the
tenant-specific `https://myapps.microsoft.com/?tenantid=<tenant>` (a bare My Apps link can open the guest's home
tenant: seed 004, "the part that confuses Gmail users")."""

DEFAULT_MESSAGE = (
    "You were invited as a guest but have not accepted the invitation yet. Accept it before {disable_on} to keep "
    "your access; after that, the unused guest account is disabled, and deleted on {delete_on}."
)


class ReinviteState(enum.StrEnum):
    PLANNED = "planned"
    """A warning of a never-redeemed invitation, re-invite on: the invitation is re-sent when the warning is."""
    NO_ADDRESS = "no-address"
    """Would be re-invited, but the guest has no mail address to invite (nothing is sent)."""
    SENT = "sent"
    UNCERTAIN = "uncertain"
    """A timeout, a 5xx or a process that died while inviting: maybe sent; never sent again in this episode."""
    FAILED = "failed"
    """Graph refused it (4xx, e.g. 403 without User.Invite.All or with B2B invitations off): certainly not sent."""
    MISMATCH = "mismatch"
    """Graph answered for another user than the guest (its address belongs to someone else): for an admin."""
    ALREADY_SENT = "already-sent"
    """An earlier run re-sent it in this lifecycle episode."""
    HELD = "held"
    """Another invocation is re-inviting this guest right now."""


@dataclass(frozen=True, slots=True)
class ReinviteConfig:
    """STALE_REINVITE_REDIRECT_URL and STALE_REINVITE_MESSAGE (the switch, STALE_REINVITE_PENDING, is policy)."""

    redirect_url: str = DEFAULT_REDIRECT_URL
    message: str = DEFAULT_MESSAGE

    def message_for(self, disable_on: str, delete_on: str) -> str:
        """The message with `{disable_on}` and `{delete_on}` filled in; any other brace is left as written."""
        return self.message.replace("{disable_on}", disable_on).replace("{delete_on}", delete_on)


@dataclass(frozen=True, slots=True)
class InvitationRequest:
    """One `POST /invitations` for an existing guest: its address, the redirect and the personal message."""

    user_id: str
    """The guest we mean (Graph does not take it without resetRedemption: the answer is checked against it)."""
    email: str
    redirect_url: str
    message: str


@dataclass(frozen=True, slots=True)
class SentInvitation:
    """What Graph answered (never the inviteRedeemUrl: it carries a redemption ticket, not for logs or audit)."""

    invited_user_id: str | None
    status: str | None
    """PendingAcceptance | Completed | InProgress | Error (invitation.md)."""

    def mismatch(self, request: InvitationRequest) -> bool:
        return self.invited_user_id is not None and self.invited_user_id.lower() != request.user_id.lower()


def plan_reinvite(action: Action, evidence: dict[str, Any], mail: str | None, enabled: bool) -> ReinviteState | None:
    """Whether a plan item is re-invited: a warning (the stage before anything is taken away) of a guest judged
    by its never-redeemed invitation, with re-invite on. None: not a re-invite at all."""
    if not enabled or action is not Action.WARN or evidence.get("basis") != "invitation-pending":
        return None
    return ReinviteState.PLANNED if mail else ReinviteState.NO_ADDRESS


LABELS = {
    ReinviteState.NO_ADDRESS: "not re-invited: no mail address",
    ReinviteState.SENT: "re-invited",
    ReinviteState.UNCERTAIN: "re-invite uncertain: not sent again",
    ReinviteState.FAILED: "re-invite failed",
    ReinviteState.MISMATCH: "re-invite answered for another user",
    ReinviteState.ALREADY_SENT: "re-invited earlier in this episode",
    ReinviteState.HELD: "re-invite held by another run",
}


def reinvite_label(evidence: dict[str, Any], outcome: str) -> str:
    """How a plan item's re-invite reads in the CLI table and the reports ("" when it is not one): a planned one
    is "would re-invite" in a dry run, "not re-invited" when the warning was not done (capped, aborted, failed)."""
    state = evidence.get(REINVITE_EVIDENCE)
    if not state:
        return ""
    if state == ReinviteState.PLANNED:
        return "would re-invite" if outcome == "would-do" else "not re-invited"
    try:
        return LABELS.get(ReinviteState(state), str(state))
    except ValueError:  # a state a newer guestwarden wrote
        return str(state)
