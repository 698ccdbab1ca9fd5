"""POST /invitations through msgraph-sdk and the simulator (local/graph_sim/resources/invitations.py): the gateway
re-sends a never-redeemed guest's invitation in Microsoft's shapes (invitation-post.md), the simulator records it
like the mail outbox, and without User.Invite.All (or a broader role) Graph's 403 comes back as a GraphError."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from local.graph_sim import GraphSimulator
from shared.adapters.credentials import LocalTokenCredential
from shared.adapters.graph import GraphConfig, GraphError, GraphGateway
from shared.domain.reinvite import InvitationRequest
from shared.ports.graph import BatchRequest

FIXTURE = Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json"
REDIRECT = "https://myapps.microsoft.com/?tenantid=2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sim() -> Iterator[GraphSimulator]:
    with GraphSimulator.from_fixture(FIXTURE).start() as simulator:
        yield simulator


@pytest.fixture
async def gateway(sim: GraphSimulator) -> AsyncIterator[GraphGateway]:
    config = GraphConfig(base_url=sim.base_url, max_retries=0)
    async with GraphGateway(LocalTokenCredential(token_url=sim.token_url), config) as gw:
        yield gw


def request_for(sim: GraphSimulator, name: str, message: str = "Please accept by 2026-12-07.") -> InvitationRequest:
    user = sim.user(name)
    return InvitationRequest(user["id"], user["mail"], REDIRECT, message)


async def test_a_pending_guest_gets_its_invitation_again(sim: GraphSimulator, gateway: GraphGateway) -> None:
    sim.set_graph_roles(["User.Invite.All"])  # the least privileged role of the route, alone
    guest = sim.user("pending-old")
    users_before, changed_before = len(sim.store.users), guest["externalUserStateChangeDateTime"]
    sent = await gateway.resend_invitation(request_for(sim, "pending-old"))
    assert (sent.invited_user_id, sent.status) == (guest["id"], "PendingAcceptance")
    [recorded] = sim.invitations
    assert recorded["invitedUserId"] == guest["id"] and recorded["messageSent"] is True
    assert recorded["invitedUserEmailAddress"] == guest["mail"] and recorded["inviteRedirectUrl"] == REDIRECT
    assert recorded["customizedMessageBody"] == "Please accept by 2026-12-07."
    assert recorded["resetRedemption"] is False and recorded["createdUser"] is False
    assert len(sim.store.users) == users_before  # the same guest, no new user
    assert sim.user("pending-old")["externalUserStateChangeDateTime"] == changed_before
    assert sim.requests["POST /invitations"] == 1


async def test_without_user_invite_all_graph_refuses(sim: GraphSimulator, gateway: GraphGateway) -> None:
    sim.set_graph_roles(["User.Read.All", "User.EnableDisableAccount.All", "Mail.Send", "AuditLog.Read.All"])
    with pytest.raises(GraphError) as refused:
        await gateway.resend_invitation(request_for(sim, "pending-old"))
    assert refused.value.status == 403 and refused.value.code == "Authorization_RequestDenied"
    assert sim.invitations == [] and sim.denied["POST /invitations"] == 1


def test_the_answer_is_microsofts_invitation_shape(sim: GraphSimulator) -> None:
    token = httpx.post(sim.token_url, data={"grant_type": "client_credentials"}).json()["access_token"]
    guest = sim.user("pending-recent")
    body = {"invitedUserEmailAddress": guest["mail"], "inviteRedirectUrl": REDIRECT, "sendInvitationMessage": True}
    response = httpx.post(f"{sim.base_url}/invitations", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    answer = response.json()
    assert answer["@odata.context"].endswith("/$metadata#invitations/$entity")
    assert {
        "id",
        "inviteRedeemUrl",
        "invitedUserDisplayName",
        "invitedUserType",
        "invitedUserEmailAddress",
        "sendInvitationMessage",
        "resetRedemption",
        "inviteRedirectUrl",
        "status",
        "invitedUserMessageInfo",
        "invitedUser",
    } <= set(answer)
    assert answer["inviteRedeemUrl"].startswith("https://login.microsoftonline.com/redeem?rd=")
    assert answer["invitedUser"]["id"] == guest["id"] and answer["status"] == "PendingAcceptance"


def test_a_new_address_creates_a_pending_guest_and_bad_requests_are_refused(sim: GraphSimulator) -> None:
    token = httpx.post(sim.token_url, data={"grant_type": "client_credentials"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{sim.base_url}/invitations"
    created = httpx.post(
        url, json={"invitedUserEmailAddress": "new@partner.example", "inviteRedirectUrl": REDIRECT}, headers=headers
    ).json()
    user = sim.user(created["invitedUser"]["id"])
    assert (user["userType"], user["externalUserState"], user["creationType"]) == (
        "Guest",
        "PendingAcceptance",
        "Invitation",
    )
    assert sim.invitations[-1]["messageSent"] is False  # sendInvitationMessage defaults to false
    for bad in (
        {"inviteRedirectUrl": REDIRECT},
        {"invitedUserEmailAddress": "new@partner.example"},
        {"invitedUserEmailAddress": "a+b@partner.example", "inviteRedirectUrl": REDIRECT},
    ):
        response = httpx.post(url, json=bad, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "BadRequest"


async def test_it_works_inside_batch_too(sim: GraphSimulator, gateway: GraphGateway) -> None:
    """Not used by the sweep (one request per guest), but Graph's $batch carries any request: so does the sim."""
    guest = sim.user("pending-old")
    body = {"invitedUserEmailAddress": guest["mail"], "inviteRedirectUrl": REDIRECT, "sendInvitationMessage": True}
    [result] = await gateway.batch([BatchRequest("1", "POST", "/invitations", body, idempotent=False)])
    assert result.status == 201 and sim.invitations[-1]["invitedUserId"] == guest["id"]
