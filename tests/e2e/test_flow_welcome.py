"""The welcome mail end to end on the local world, through its public surface only: the simulator's guests redeem
their invitations (a partner-tenant guest, an email one-time passcode guest, a Microsoft account guest), Graph's
change notifications reach the real function_app on the local host through the local Service Bus broker, the
guests are licensed, and the welcome mails land in the simulator's sendMail outbox, once each, with the sign-in
path that fits each identity and the tenant-specific My Apps link. The licensing flow runs with exactly the roles
shared/permissions.py declares for LICENSE_WELCOME_MAIL=true.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.test_flow_licensing import (  # noqa: F401 (world_factory is a fixture used by name)
    HINTS,
    NAMED,
    TENANT,
    World,
    WorldFactory,
    subscribe,
    world_factory,
)
from tests.waiting import eventually

TENANT_ID = TENANT["tenant"]["id"]
LINK = f"https://myapps.microsoft.com/?tenantid={TENANT_ID}"
WELCOME = {
    "LICENSE_WELCOME_MAIL": "true",
    "LICENSE_WELCOME_TENANT_ID": TENANT_ID,
    "LICENSE_WELCOME_ORGANISATION": "Contoso",
}


def welcomes(world: World) -> dict[str, list[dict[str, Any]]]:
    """The welcome mails in the simulator's outbox, by recipient."""
    found: dict[str, list[dict[str, Any]]] = {}
    for sent in world.sim.outbox:
        message = sent["message"]
        if "how to sign in" not in str(message.get("subject")):
            continue
        for recipient in message.get("toRecipients") or []:
            found.setdefault(recipient["emailAddress"]["address"], []).append(sent)
    return found


async def test_each_licensed_guest_gets_one_welcome_mail_with_the_path_of_its_identity(
    world_factory: WorldFactory,  # noqa: F811
) -> None:
    world = await world_factory(**WELCOME)
    await subscribe(world)
    world.sim.notifications.configure(duplicates=1)  # at least once: every change reaches us twice

    partner = NAMED["pending-recent"]  # a fabrikam.com guest: redeems with its Entra work account
    partner_mail = world.sim.user(partner)["mail"]
    otp = world.sim.invite_guest("jane.otp@gmail.com", "Jane Otp")
    msa = world.sim.invite_guest("omar@outlook.com", "Omar Outlook")
    assert [i["signInType"] for i in world.sim.user(otp)["identities"]] == ["userPrincipalName"]  # until redeemed

    for guest in (partner, otp, msa):
        world.sim.redeem_invitation(guest)
    assert world.sim.user(otp)["identities"][0] == {
        "signInType": "federated",
        "issuer": "mail",
        "issuerAssignedId": "jane.otp@gmail.com",
    }

    expected = {partner_mail, "jane.otp@gmail.com", "omar@outlook.com"}
    await eventually(lambda: set(welcomes(world)) >= expected, timeout_s=30, what="three welcome mails")
    sku = HINTS["guestSkuId"]
    for guest in (partner, otp, msa):
        assert sku in {lic["skuId"] for lic in world.sim.user(guest)["assignedLicenses"]}

    mails = welcomes(world)
    bodies = {address: mails[address][0]["message"]["body"] for address in expected}
    for address, body in bodies.items():
        assert body["contentType"].lower() == "html"
        assert f'href="{LINK}"' in body["content"], address
        assert mails[address][0]["sender"] == "guestwarden@contoso.onmicrosoft.com"
    assert "one-time code" in bodies["jane.otp@gmail.com"]["content"]
    assert "Sign in to an organization" in bodies["jane.otp@gmail.com"]["content"]
    assert "contoso.onmicrosoft.com" in bodies["jane.otp@gmail.com"]["content"]
    assert "Microsoft account" in bodies["omar@outlook.com"]["content"]
    assert "at fabrikam.com" in bodies[partner_mail]["content"]
    assert "one-time code" not in bodies[partner_mail]["content"]

    # a later change of a welcomed guest (a notification, twice, and a delta pass) mails nothing more: wait until
    # Graph delivered the rename and the queue is drained, which is when a second mail would have been sent
    delivered = len([d for d in world.sim.deliveries if d.get("user_id") == partner and d.get("ok")])
    world.sim.update_user(partner, displayName="Paula Renamed")
    await eventually(
        lambda: len([d for d in world.sim.deliveries if d.get("user_id") == partner and d.get("ok")]) > delivered,
        what="the rename's notification",
    )
    assert await world.host.fire_timer("delta_backstop")
    await eventually(lambda: world.broker.queue_depth("guest-changes") == 0, timeout_s=30, what="a drained queue")
    assert {address: len(sent) for address, sent in welcomes(world).items()} == dict.fromkeys(expected, 1)
    for guest in (partner, otp, msa):
        assert "welcome" in await world.audit_once_it_has(guest, "welcome")


async def test_without_the_setting_no_welcome_mail_is_sent(world_factory: WorldFactory) -> None:  # noqa: F811
    world = await world_factory()
    await subscribe(world)
    guest = NAMED["pending-recent"]
    world.sim.redeem_invitation(guest)
    sku = HINTS["guestSkuId"]
    await eventually(
        lambda: sku in {lic["skuId"] for lic in world.sim.user(guest)["assignedLicenses"]}, what="the licence"
    )
    await eventually(lambda: world.broker.queue_depth("guest-changes") == 0, timeout_s=30, what="a drained queue")
    assert welcomes(world) == {}
    assert "welcome" not in await world.audit(guest)
