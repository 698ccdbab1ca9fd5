"""Flow 1 end to end on the local world: the real function_app on the local host, the Graph simulator sending
real change notifications (after a real validation handshake), the local Service Bus broker in between.

Nothing here calls a service directly: the subscription keeper timer creates the subscription, a guest redeems
their invitation in the simulator, and the test watches what lands in the tenant and the audit log.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

import function_app
from local.graph_sim import GraphSimulator
from local.graph_sim.resources.delta import DELTA_EXPIRY_VARIANTS
from local.host import LocalFunctionsHost
from local.servicebus_broker import LocalServiceBusBroker, QueueOptions
from local.world import app_settings, flow_roles, free_port, with_roles
from shared.adapters.state.sqlite import SqliteStateStore
from shared.bootstrap import AppServices
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())
NAMED: dict[str, str] = TENANT["named"]
HINTS: dict[str, str] = TENANT["hints"]
KEY = "e2e-function-key"
CLIENT_STATE = "e2e-client-state-0123456789abcdef"

pytestmark = pytest.mark.timeout(120)


@dataclass
class World:
    sim: GraphSimulator
    broker: LocalServiceBusBroker
    host: LocalFunctionsHost
    state_path: Path

    def licenses(self, user_key: str) -> set[str]:
        return {lic["skuId"] for lic in self.sim.user(NAMED[user_key]).get("assignedLicenses", [])}

    def assign_calls(self) -> int:
        return sum(n for key, n in self.sim.requests.items() if key.endswith("/assignLicense"))

    async def audit(self, subject: str) -> list[str]:
        async with SqliteStateStore(self.state_path) as state:
            since = datetime.now(UTC) - timedelta(days=1)
            return [e.action async for e in state.query(since, subject=subject)]

    async def audit_once_it_has(self, subject: str, action: str, timeout_s: float = 20.0) -> list[str]:
        """The subject's audit trail once `action` is in it (Graph changes land before their audit entry)."""
        actions: list[str] = []

        async def has_it() -> bool:
            actions[:] = await self.audit(subject)
            return action in actions

        with contextlib.suppress(AssertionError):  # the caller asserts on the trail, which says more
            await eventually(has_it, timeout_s, what=f"{action} in the audit of {subject}")
        return actions


def settings_for(
    sim: GraphSimulator, broker: LocalServiceBusBroker, port: int, state: Path, **extra: str
) -> dict[str, str]:
    return settings_for_url(sim.base_url, broker, port, state, **extra)


def settings_for_url(
    graph_url: str, broker: LocalServiceBusBroker, port: int, state: Path, **extra: str
) -> dict[str, str]:
    return app_settings(
        graph_url=graph_url,
        servicebus=broker.connection_string,
        host_port=port,
        state_path=state,
        function_key=KEY,
        client_state=CLIENT_STATE,
        **extra,
    )


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def world_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WorldFactory]:
    """Starts the local world with the given extra settings; stops all of it after the test."""
    started: list[GraphSimulator | LocalServiceBusBroker | LocalFunctionsHost] = []

    async def start(*, without: tuple[str, ...] = (), **extra: str) -> World:
        """The licensing flow runs with ONLY the roles shared/permissions.py declares for it under these
        settings (minus `without`): a missing or superfluous declaration shows up here as a 403."""
        broker = LocalServiceBusBroker(
            queues={
                GUEST_CHANGES_QUEUE: QueueOptions(max_delivery_count=3, lock_duration_s=10),
                RISK_INCIDENTS_QUEUE: QueueOptions(),
            }
        ).start()
        started.append(broker)
        port = free_port()
        planned = settings_for_url("http://127.0.0.1:1/v1.0", broker, port, tmp_path / "state.db", **extra)
        roles = flow_roles(["licensing"], planned) - set(without)
        sim = GraphSimulator(with_roles(FIXTURE, roles)).start()
        started.append(sim)
        state = tmp_path / "state.db"
        settings = settings_for(sim, broker, port, state, **extra)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)  # app settings reach the worker as environment variables
        AppServices.reset()
        AppServices.use_clock(sim.clock.now)  # one clock for the world: the simulator's
        host = LocalFunctionsHost(function_app.build_app(), settings, port=port, clock=sim.clock)
        await host.start()
        started.append(host)
        return World(sim, broker, host, state)

    yield start
    for thing in reversed(started):
        if isinstance(thing, LocalFunctionsHost):
            await thing.stop()
        else:
            thing.stop()
    await AppServices.close_current()
    AppServices.reset()


@pytest.fixture
async def world(world_factory: WorldFactory) -> World:
    return await world_factory()


async def subscribe(world: World) -> str:
    assert await world.host.fire_timer("subscription_keeper")
    subscriptions = [s for s in world.sim.subscriptions() if s["resource"].strip("/") == "users"]
    assert len(subscriptions) == 1
    return str(subscriptions[0]["id"])


async def test_redeemed_guest_gets_usage_location_and_licence_exactly_once(world: World) -> None:
    await subscribe(world)
    guest = NAMED["pending-recent"]
    sku = HINTS["guestSkuId"]
    assert world.sim.user(guest).get("usageLocation") is None
    world.sim.notifications.configure(duplicates=2)  # Graph delivers at least once: here, three times

    world.sim.redeem_invitation(guest)
    await eventually(lambda: sku in world.licenses("pending-recent"), what="the licence")

    assert world.sim.user(guest)["usageLocation"] == "US"
    delivered = [d for d in world.sim.deliveries if d.get("user_id") == guest and d.get("ok")]
    first = min(d["sequence_number"] for d in delivered)
    assert sum(d["sequence_number"] == first for d in delivered) == 3  # the redemption reached us three times
    # a later change of the same guest, seen by a notification AND by a delta pass
    assert await world.host.fire_timer("delta_backstop")  # first run: starts from now
    world.sim.update_user(guest, displayName="Renamed after accepting")
    assert await world.host.fire_timer("delta_backstop")
    # the redemption (copies collapsed), our own usageLocation PATCH, the rename, and the delta pass
    await world.host.wait_for("process_guest_change", invocations=4, timeout_s=20)
    assert world.assign_calls() == 1
    assert await world.audit(guest) == ["set-usage-location", "assign-license"]


async def test_group_mode_adds_the_guest_to_the_licensing_group(world_factory: WorldFactory) -> None:
    world = await world_factory(LICENSE_MODE="group", LICENSE_GROUP_ID=HINTS["licensingGroupId"])
    await subscribe(world)
    guest = NAMED["pending-old"]
    world.sim.redeem_invitation(guest)
    group = HINTS["licensingGroupId"]

    def member() -> bool:
        return guest in world.sim.store.groups[group]["members"]

    await eventually(member, what="the group membership")
    assert await world.audit_once_it_has(guest, "add-to-licensing-group") == ["add-to-licensing-group"]


async def test_poison_message_is_dead_lettered_after_max_delivery_count(world: World) -> None:
    client = ServiceBusClient.from_connection_string(world.broker.connection_string)
    async with client, client.get_queue_sender(GUEST_CHANGES_QUEUE) as sender:
        await sender.send_messages(ServiceBusMessage(b"{not json", message_id="poison-1"))
    await eventually(lambda: bool(world.broker.dead_letters(GUEST_CHANGES_QUEUE)), what="the dead letter")
    [dead] = world.broker.dead_letters(GUEST_CHANGES_QUEUE)
    assert dead["reason"] == "MaxDeliveryCountExceeded"
    assert world.host.stats["process_guest_change"].failures == 3


async def test_forged_notifications_are_refused_and_enqueue_nothing(world: World) -> None:
    import httpx

    subscription_id = await subscribe(world)
    forged = {
        "value": [
            {
                "subscriptionId": subscription_id,
                "clientState": "not-the-secret",
                "changeType": "updated",
                "resource": f"Users/{NAMED['pending-old']}",
                "resourceData": {"id": NAMED["pending-old"]},
            }
        ]
    }
    async with httpx.AsyncClient(base_url=world.host.http_url) as client:
        no_key = await client.post("/api/graph/notifications", json=forged)
        wrong_state = await client.post(f"/api/graph/notifications?code={KEY}", json=forged)
    assert no_key.status_code == 401
    assert wrong_state.status_code == 403
    # A later genuine notification is processed after anything the forged ones might have enqueued.
    genuine = {"value": [{**forged["value"][0], "clientState": CLIENT_STATE}]}
    async with httpx.AsyncClient(base_url=world.host.http_url) as client:
        accepted = await client.post(f"/api/graph/notifications?code={KEY}", json=genuine)
    assert accepted.is_success, accepted.text
    await world.host.wait_for("process_guest_change", invocations=1, timeout_s=20)
    await eventually(lambda: world.broker.queue_depth(GUEST_CHANGES_QUEUE) == 0, what="the queue to drain")
    assert world.broker.stats[GUEST_CHANGES_QUEUE]["sent"] == 1  # the genuine one: the forged enqueued nothing
    assert world.host.stats["process_guest_change"].invocations == 1


async def test_subscription_is_renewed_then_recreated_when_graph_forgets_it(world: World) -> None:
    """The keeper against the simulator's real subscription semantics (expiry deletes, handshake again).

    The timer runs this same service; it is called here with the simulator's clock, which can jump weeks.
    """
    from dataclasses import replace

    from shared.services.subscriptions import ensure_subscription

    deps = replace(AppServices.current().subscriptions(), clock=world.sim.clock.now)
    created = await ensure_subscription(deps)
    assert created.action == "created"
    world.sim.clock.advance(timedelta(minutes=41000) - timedelta(hours=48))  # inside the 72 h renewal window
    renewed = await ensure_subscription(deps)
    assert (renewed.action, renewed.subscription_id) == ("renewed", created.subscription_id)
    [live] = world.sim.subscriptions()
    assert live["expirationDateTime"].startswith(
        (world.sim.clock.now() + timedelta(minutes=41000)).strftime("%Y-%m-%d")
    )

    world.sim.clock.advance(timedelta(days=30))  # expired: Graph deletes it
    assert world.sim.subscriptions() == []
    recreated = await ensure_subscription(deps)
    assert recreated.action == "recreated" and recreated.subscription_id != created.subscription_id
    assert len(world.sim.notifications.validations) == 2  # a second validation handshake, answered by our webhook

    # notifications under the new subscription are accepted and acted on
    world.sim.redeem_invitation(NAMED["pending-recent"])
    await eventually(lambda: HINTS["guestSkuId"] in world.licenses("pending-recent"), what="the licence")


@pytest.mark.parametrize("variant", DELTA_EXPIRY_VARIANTS)
async def test_expired_delta_link_resyncs_and_catches_a_lost_notification(
    world_factory: WorldFactory, variant: str
) -> None:
    """Every way Graph can stop serving a saved deltaLink (400 syncStateNotFound, a 410 Gone sync reset with a
    Location, another 400) ends in a full resync, never in a backstop that fails every run."""
    world = await world_factory(LICENSE_MODE="group", LICENSE_GROUP_ID=HINTS["licensingGroupId"])
    await subscribe(world)
    assert await world.host.fire_timer("delta_backstop")  # first run: a deltaLink from now
    world.sim.expire_delta_links(variant)  # e.g. the backstop did not run for 7 days
    world.sim.notifications.configure(drop_rate=1.0)  # and Graph never delivers this one
    guest = NAMED["pending-old"]
    world.sim.redeem_invitation(guest)
    assert await world.host.fire_timer("delta_backstop")  # the link is not served -> full resync
    group = HINTS["licensingGroupId"]
    await eventually(lambda: guest in world.sim.store.groups[group]["members"], timeout_s=60, what="the resync")
    assert "add-to-licensing-group" in await world.audit_once_it_has(guest, "add-to-licensing-group")


async def test_graph_asks_to_reauthorize_the_subscription_and_the_app_does(world: World) -> None:
    """The one lifecycle event Graph sends for /users, and only to a lifecycleNotificationUrl: the keeper always
    gives one (GRAPH_LIFECYCLE_NOTIFICATION_URL, by default the notification URL)."""
    sub_id = await subscribe(world)
    [sub] = [s for s in world.sim.subscriptions() if s["id"] == sub_id]
    assert sub["lifecycleNotificationUrl"] == sub["notificationUrl"]
    assert world.sim.send_lifecycle_event(sub_id, "reauthorizationRequired")
    live = world.sim.notifications.get(sub_id)
    assert live is not None
    await eventually(lambda: not live.reauthorization_required, what="the reauthorization")
    assert world.sim.requests["POST /subscriptions/{id}/reauthorize"] == 1


async def test_a_self_service_sign_up_guest_is_licensed_like_a_redeemed_one(world: World) -> None:
    """B2B self-service sign-up leaves externalUserState null (microsoft-graph-docs-contrib#8702): the guest
    joined without an invitation, so creating it is what licenses it (docs/licensing.md, "Who is licensed")."""
    await subscribe(world)
    sku = HINTS["guestSkuId"]
    guest = world.sim.invite_guest(
        "selfserve@tailspintoys.com", "Sam Self", externalUserState=None, creationType="SelfServiceSignUp"
    )
    await eventually(lambda: sku in {lic["skuId"] for lic in world.sim.user(guest).get("assignedLicenses", [])})
    assert world.sim.user(guest)["usageLocation"]


# Least privilege: every test above runs with ONLY the roles shared/permissions.py declares for the licensing
# flow in its mode (world_factory). Each role it declares is needed: without it the flow fails with Graph's 403,
# as docs/permissions.md's "without it" column says.
@pytest.mark.parametrize(
    ("mode", "missing", "route"),
    [
        ("sku", "Organization.Read.All", "GET /subscribedSkus"),
        ("sku", "User.ReadWrite.All", "PATCH /users/{id}"),
        ("group", "GroupMember.ReadWrite.All", "POST /groups/{id}/members/$ref"),
    ],
)
async def test_without_a_declared_role_licensing_fails_with_403(
    world_factory: WorldFactory, mode: str, missing: str, route: str
) -> None:
    extra = {"LICENSE_MODE": mode} | ({"LICENSE_GROUP_ID": HINTS["licensingGroupId"]} if mode == "group" else {})
    world = await world_factory(without=(missing,), **extra)
    await subscribe(world)
    guest = NAMED["pending-old"] if mode == "group" else NAMED["pending-recent"]
    world.sim.redeem_invitation(guest)

    # the queue retries the message (max delivery count 3): wait for the first failed invocation
    def failed() -> bool:
        stats = world.host.stats.get("process_guest_change")
        return stats is not None and stats.failures >= 1

    await eventually(failed, what="a failed invocation")
    assert world.sim.denied[route] >= 1
    assert set(world.sim.denied) == {route}  # nothing else was refused: the other declared roles suffice
    assert HINTS["guestSkuId"] not in {str(x["skuId"]) for x in world.sim.user(guest).get("assignedLicenses") or []}
    assert guest not in world.sim.store.groups[HINTS["licensingGroupId"]]["members"]


async def test_license_assignment_role_is_redundant_while_sku_mode_holds_user_read_write(
    world_factory: WorldFactory,
) -> None:
    """Known excess (open decision, docs/permissions.md): User.ReadWrite.All, which sku mode needs for
    usageLocation, also grants assignLicense, so LicenseAssignment.ReadWrite.All adds nothing today."""
    world = await world_factory(without=("LicenseAssignment.ReadWrite.All",))
    await subscribe(world)
    world.sim.redeem_invitation(NAMED["pending-recent"])
    await eventually(lambda: HINTS["guestSkuId"] in world.licenses("pending-recent"), what="the licence")
    assert not world.sim.denied


async def test_with_exactly_the_declared_roles_nothing_is_refused(world: World) -> None:
    await subscribe(world)
    guest = NAMED["pending-recent"]
    world.sim.redeem_invitation(guest)
    await eventually(lambda: HINTS["guestSkuId"] in world.licenses("pending-recent"), what="the licence")
    assert not world.sim.denied
