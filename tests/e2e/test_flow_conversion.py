"""Conversions and identity drift end to end on the local world, through its public surface: the simulator changes
a guest (an admin makes it a Member; its sign-in identity changes after redemption), Graph's change notification
reaches the real function_app on the local host, the local Service Bus broker carries the message to the
processor, and the test watches the audit log, the state and the simulator's tenant and sendMail outbox. The
licensing flow runs with exactly the roles shared/permissions.py declares for its settings.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.adapters.state.sqlite import SqliteStateStore
from shared.domain.stale import Stage, StageMemory
from shared.services.conversion import WATCH_KIND
from shared.services.stale.deps import RECORD_KIND as STAGE_KIND
from tests.e2e.test_flow_licensing import (  # noqa: F401 (world_factory is a fixture used by name)
    HINTS,
    NAMED,
    World,
    WorldFactory,
    subscribe,
    world_factory,
)
from tests.waiting import eventually


async def record(world: World, kind: str, key: str) -> dict[str, Any] | None:
    async with SqliteStateStore(world.state_path) as state:
        found = await state.get(kind, key)
        return found.value if found else None


async def evidence_of(world: World, subject: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    async with SqliteStateStore(world.state_path) as state:
        since = world.sim.clock.now() - timedelta(days=1)
        return [(e.outcome, dict(e.evidence)) async for e in state.query(since, subject=subject, action=action)]


def alerts(world: World) -> list[dict[str, Any]]:
    return [s["message"] for s in world.sim.outbox if "sign-in identity" in str(s["message"].get("subject"))]


async def licensed_and_watched(world: World, guest: str) -> None:
    """The guest redeems, is licensed, and its redeemed identity is remembered."""
    world.sim.redeem_invitation(guest)
    await eventually(lambda: HINTS["guestSkuId"] in world.licenses("pending-recent"), what="the licence")

    async def watched() -> bool:
        value = await record(world, WATCH_KIND, guest)
        return bool(value and value.get("identities"))

    await eventually(watched, what="the guest's identities remembered")


async def test_a_guest_made_member_is_audited_its_stale_episode_closed_and_its_guest_licence_taken_back(
    world_factory: WorldFactory,  # noqa: F811
) -> None:
    world = await world_factory(CONVERSION_REMOVE_GUEST_LICENSE="true")
    await subscribe(world)
    guest = NAMED["pending-recent"]
    await licensed_and_watched(world, guest)
    warned = StageMemory(Stage.WARNED, world.sim.clock.now(), run_id="run-1", episode="inactive-since:x")
    async with SqliteStateStore(world.state_path) as state:  # as a stale sweep leaves a guest it warned
        await state.put(STAGE_KIND, guest, warned.to_json(), etag=None)

    world.sim.convert_to_member(guest)  # an admin sets userType=Member: the notification is all we get

    trail = await world.audit_once_it_has(guest, "conversion")
    assert trail == ["set-usage-location", "assign-license", "conversion"]
    [(outcome, evidence)] = await evidence_of(world, guest, "conversion")
    assert outcome == "done" and evidence["to"] == "Member"
    assert evidence["guestLicence"]["removed"] is True
    assert HINTS["guestSkuId"] not in world.licenses("pending-recent")
    assert evidence["staleStage"]["stage"] == "warned"
    assert await record(world, STAGE_KIND, guest) is None
    async with SqliteStateStore(world.state_path) as state:  # the sweep's next step for the episode is done
        scope = f"warned:{warned.since.isoformat()}"
        pending = await state.claim("stale-disable", guest, scope, owner="a-later-run", lease_seconds=60)
        assert pending.done and (pending.outcome or {})["result"] == "closed-by-conversion"
    assert world.sim.user(guest)["accountEnabled"] is True
    assert alerts(world) == []  # a conversion is no identity drift


async def test_a_changed_sign_in_identity_is_flagged_to_the_admins_once_and_the_guest_left_alone(
    world_factory: WorldFactory,  # noqa: F811
) -> None:
    world = await world_factory()
    await subscribe(world)
    guest = NAMED["pending-recent"]  # a fabrikam.com guest: redeems with its partner tenant (ExternalAzureAD)
    await licensed_and_watched(world, guest)

    world.sim.change_identity(guest, "google.com")

    assert "identity-drift" in await world.audit_once_it_has(guest, "identity-drift")
    await eventually(lambda: bool(alerts(world)), what="the admins' alert mail")
    done = world.host.stats["process_guest_change"].invocations
    world.sim.update_user(guest, displayName="Renamed after the drift")  # a later change of the same guest
    await world.host.wait_for("process_guest_change", invocations=done + 1, timeout_s=20)

    [mail] = alerts(world)
    assert [r["emailAddress"]["address"] for r in mail["toRecipients"]] == ["megan@contoso.com"]
    body = mail["body"]["content"]
    assert "federated/ExternalAzureAD" in body and "federated/google.com" in body
    assert "guestwarden changed nothing" in body
    [(outcome, evidence)] = await evidence_of(world, guest, "identity-drift")
    assert outcome == "flagged" and evidence["kind"] == "issuer-changed" and evidence["mail"] == "sent"
    user = world.sim.user(guest)
    assert user["accountEnabled"] is True and user["userType"] == "Guest"
    assert HINTS["guestSkuId"] in world.licenses("pending-recent")
