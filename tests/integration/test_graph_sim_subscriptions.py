"""Subscriptions on /users and change notifications, against a real HTTP receiver on 127.0.0.1.

The receiver runs on its own event loop in a thread (like the simulator), so these tests stay synchronous
and talk to the simulator with plain httpx, exactly as the Functions app and Graph talk to each other.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription

from local.graph_sim import GraphSimulator
from local.graph_sim.clock import iso_z
from tests.integration.test_graph_sim_sdk import build_client

pytestmark = pytest.mark.timeout(60)

DOC_EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "graph_docs" / "change-notification.json"
SUBSCRIPTION_KEYS = {
    "@odata.context",
    "id",
    "resource",
    "applicationId",
    "changeType",
    "clientState",
    "notificationUrl",
    "notificationQueryOptions",
    "lifecycleNotificationUrl",
    "expirationDateTime",
    "creatorId",
    "includeResourceData",
    "latestSupportedTlsVersion",
    "encryptionCertificate",
    "encryptionCertificateId",
    "notificationUrlAppId",
}
SECRET = "s3cret-client-state"
FAST_RETRIES = (0.05, 0.05)


class Receiver:
    """A webhook endpoint: a correct handshake by default; misbehaviour on demand."""

    def __init__(self) -> None:
        self.handshake = "ok"  # ok | wrong-token | status-500 | slow | wrong-type
        self.handshake_sleep_s = 2.0
        self.statuses: list[int] = []  # answers for the next notification POSTs (then 202)
        self.notify_sleep_s = 0.0
        self.handshakes: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/graph/notifications?code=functionkey"

    @property
    def lifecycle_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/graph/lifecycle?code=functionkey"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if "validationToken" in request.query:
            token = request.query["validationToken"]
            with self._lock:
                self.handshakes.append(
                    {
                        "path": request.path,
                        "query": dict(request.query),
                        "raw_query": request.rel_url.raw_query_string,
                        "content_type": request.headers.get("Content-Type"),
                        "body": await request.read(),
                    }
                )
            if self.handshake == "wrong-token":
                return web.Response(text=token + "x", content_type="text/plain")
            if self.handshake == "status-500":
                return web.Response(status=500)
            if self.handshake == "wrong-type":
                return web.json_response(token)
            if self.handshake == "slow":
                await asyncio.sleep(self.handshake_sleep_s)
            return web.Response(text=token, content_type="text/plain")
        body = await request.json()
        with self._lock:
            self.posts.append(
                {"path": request.path, "query": dict(request.query), "headers": dict(request.headers), "body": body}
            )
            status = self.statuses.pop(0) if self.statuses else 202
        if self.notify_sleep_s:
            await asyncio.sleep(self.notify_sleep_s)
        return web.Response(status=status)

    def notifications(self, path: str = "/api/graph/notifications") -> list[dict[str, Any]]:
        with self._lock:
            return [item for post in self.posts if post["path"] == path for item in post["body"]["value"]]

    def start(self) -> Receiver:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("POST", "/{tail:.*}", self.handle)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(self._runner.addresses[0][1])
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver().start()
    try:
        yield rx
    finally:
        rx.stop()


def in_future(sim: GraphSimulator, **delta: float) -> str:
    return (sim.clock.now() + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def subscribe(client: httpx.Client, sim: GraphSimulator, url: str, **overrides: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "changeType": "updated,deleted",
        "notificationUrl": url,
        "resource": "/users",
        "expirationDateTime": in_future(sim, days=2),
        "clientState": SECRET,
    }
    body.update(overrides)
    return client.post("/subscriptions", json={k: v for k, v in body.items() if v is not None})


def create(client: httpx.Client, sim: GraphSimulator, rx: Receiver, **overrides: Any) -> dict[str, Any]:
    response = subscribe(client, sim, rx.url, **overrides)
    assert response.status_code == 201, response.text
    return response.json()


# creation and the handshake -------------------------------------------------------------------------
def test_create_runs_the_validation_handshake(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    sub = create(graph_http, graph_sim, receiver)
    assert set(sub) == SUBSCRIPTION_KEYS
    assert sub["@odata.context"] == f"{graph_sim.base_url}/$metadata#subscriptions/$entity"
    assert uuid.UUID(sub["id"]) and sub["changeType"] == "updated,deleted" and sub["clientState"] == SECRET
    assert sub["resource"] == "/users" and sub["notificationUrl"] == receiver.url
    assert sub["latestSupportedTlsVersion"] == "v1_2" and sub["includeResourceData"] is False
    assert sub["encryptionCertificate"] is None and sub["notificationUrlAppId"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", sub["expirationDateTime"])  # Graph's 7 digits
    [shake] = receiver.handshakes
    assert shake["query"]["code"] == "functionkey" and shake["body"] == b""
    assert shake["content_type"].startswith("text/plain")
    token = shake["query"]["validationToken"]
    assert token.startswith("Validation: Testing client application reachability") and "+/=&%#" in token
    assert "%2B%2F%3D%26%25%23" in shake["raw_query"]  # sent encoded; only a correct decoding gets it back
    listed = graph_http.get("/subscriptions").json()
    assert [s["id"] for s in listed["value"]] == [sub["id"]]
    assert graph_http.get(f"/subscriptions/{sub['id']}").json()["clientState"] == SECRET


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("wrong-token", "Subscription validation request failed."),
        ("status-500", "Subscription validation request failed."),
        ("wrong-type", "Subscription validation request failed."),
        ("slow", "Subscription validation request timed out."),
    ],
)
def test_create_refused_when_handshake_fails(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver, behaviour: str, message: str
):
    receiver.handshake = behaviour
    graph_sim.validation_timeout_s = 0.3
    response = subscribe(graph_http, graph_sim, receiver.url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest" and error["message"].startswith(message)
    assert graph_http.get("/subscriptions").json()["value"] == []
    assert graph_sim.notifications.validations[-1]["ok"] is False


def test_lifecycle_url_gets_its_own_handshake(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    sub = create(graph_http, graph_sim, receiver, lifecycleNotificationUrl=receiver.lifecycle_url)
    assert sub["lifecycleNotificationUrl"] == receiver.lifecycle_url
    assert [h["path"] for h in receiver.handshakes] == ["/api/graph/notifications", "/api/graph/lifecycle"]


@pytest.mark.parametrize("url", ["http://example.com/api/graph/notifications", "ftp://127.0.0.1/x", "not a url"])
def test_plain_http_to_a_remote_host_refused(graph_http: httpx.Client, graph_sim: GraphSimulator, url: str):
    response = subscribe(graph_http, graph_sim, url)
    assert response.status_code == 400 and response.json()["error"]["code"] == "InvalidRequest"
    assert graph_sim.notifications.validations == []  # refused before any handshake


def test_expiration_limits(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    too_far = subscribe(graph_http, graph_sim, receiver.url, expirationDateTime=in_future(graph_sim, minutes=41_761))
    assert too_far.status_code == 400
    assert too_far.json()["error"]["message"] == "Subscription expiration can only be 41760 minutes in the future."
    past = subscribe(graph_http, graph_sim, receiver.url, expirationDateTime=in_future(graph_sim, minutes=-1))
    assert past.status_code == 400
    garbage = subscribe(graph_http, graph_sim, receiver.url, expirationDateTime="next tuesday")
    assert garbage.status_code == 400
    assert receiver.handshakes == []
    create(graph_http, graph_sim, receiver, expirationDateTime=in_future(graph_sim, minutes=41_760))


def test_client_state_and_change_type_rules(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    long_state = subscribe(graph_http, graph_sim, receiver.url, clientState="x" * 129)
    assert long_state.status_code == 400 and "128" in long_state.json()["error"]["message"]
    created = subscribe(graph_http, graph_sim, receiver.url, changeType="created")
    assert created.status_code == 400 and "'created'" in created.json()["error"]["message"]
    other = subscribe(graph_http, graph_sim, receiver.url, resource="/groups")
    assert other.status_code == 400
    missing = graph_http.post("/subscriptions", json={"resource": "/users"})
    assert missing.status_code == 400
    assert create(graph_http, graph_sim, receiver, clientState="x" * 128, resource="users")["resource"] == "users"
    assert create(graph_http, graph_sim, receiver, changeType="updated")["changeType"] == "updated"


def test_quota_is_403(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    graph_sim.subscription_quota = 2
    create(graph_http, graph_sim, receiver)
    create(graph_http, graph_sim, receiver)
    over = subscribe(graph_http, graph_sim, receiver.url)
    assert over.status_code == 403 and "limit of 2" in over.json()["error"]["message"]
    assert len(receiver.handshakes) == 2  # refused before the handshake


# management -------------------------------------------------------------------------------------------
def test_get_renew_reauthorize_delete(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    sub = create(graph_http, graph_sim, receiver, lifecycleNotificationUrl=receiver.lifecycle_url)
    path = f"/subscriptions/{sub['id']}"
    renewed = graph_http.patch(path, json={"expirationDateTime": in_future(graph_sim, days=28)})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    too_far = graph_http.patch(path, json={"expirationDateTime": in_future(graph_sim, days=30)})
    assert too_far.status_code == 400
    immutable = graph_http.patch(path, json={"lifecycleNotificationUrl": receiver.lifecycle_url})
    assert immutable.status_code == 400
    graph_sim.send_lifecycle_event(sub["id"], "reauthorizationRequired")
    assert graph_sim.notifications.get(sub["id"]).reauthorization_required  # type: ignore[union-attr]
    assert graph_http.post(f"{path}/reauthorize").status_code == 204
    assert not graph_sim.notifications.get(sub["id"]).reauthorization_required  # type: ignore[union-attr]
    assert graph_http.delete(path).status_code == 204
    gone = graph_http.get(path)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "Request_ResourceNotFound"
    assert graph_http.delete(path).status_code == 404
    assert graph_http.patch(path, json={"expirationDateTime": in_future(graph_sim, days=1)}).status_code == 404


def test_expired_subscription_is_gone_and_silent(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver
):
    sub = create(graph_http, graph_sim, receiver, expirationDateTime=in_future(graph_sim, hours=1))
    graph_sim.clock.advance(timedelta(hours=1, seconds=1))
    assert graph_http.get(f"/subscriptions/{sub['id']}").status_code == 404
    assert graph_http.get("/subscriptions").json()["value"] == []
    graph_sim.redeem_invitation("pending-recent")
    graph_sim.wait_for_idle()
    assert graph_sim.deliveries == [] and receiver.posts == []


# change notifications ---------------------------------------------------------------------------------
def test_redeem_invitation_sends_one_notification(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver
):
    sub = create(graph_http, graph_sim, receiver)
    user_id = graph_sim.named("pending-recent")
    graph_sim.redeem_invitation("pending-recent")
    [record] = graph_sim.wait_for_deliveries(1)
    graph_sim.wait_for_idle()
    assert record["ok"] and record["status"] == 202 and record["attempt"] == 1 and record["user_id"] == user_id
    assert record["latency_ms"] >= 0 and record["at"] == iso_z(graph_sim.clock.start)
    [post] = receiver.posts
    assert post["query"] == {"code": "functionkey"}
    assert post["headers"]["Content-Type"].startswith("application/json")
    [note] = post["body"]["value"]
    doc = json.loads(DOC_EXAMPLE.read_text(encoding="utf-8"))["value"][0]
    assert set(note) == set(doc) - {"id"}  # "id" is optional on changeNotification
    assert set(doc["resourceData"]) - {"@odata.etag"} <= set(note["resourceData"])
    tenant = graph_sim.store.tenant["id"]
    assert note == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "changeType": "updated",
        "resource": f"Users/{user_id}",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": f"Users/{user_id}",
            "id": user_id,
            "organizationId": tenant,
            "sequenceNumber": record["sequence_number"],
        },
        "clientState": SECRET,
        "tenantId": tenant,
    }
    user = graph_http.get(f"/users/{user_id}", params={"$select": "externalUserState"}).json()
    assert user["externalUserState"] == "Accepted"
    assert graph_sim.user(user_id)["externalUserStateChangeDateTime"] == iso_z(graph_sim.clock.start)


def test_invite_guest_creates_pending_guest_and_notifies(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver
):
    create(graph_http, graph_sim, receiver)
    user_id = graph_sim.invite_guest("new.person@northwind.example", display_name="New Person", usageLocation="NL")
    [record] = graph_sim.wait_for_deliveries(1)
    assert record["user_id"] == user_id and record["change_type"] == "updated"
    select = "userType,externalUserState,userPrincipalName,creationType,usageLocation"
    user = graph_http.get(f"/users/{user_id}", params={"$select": select}).json()
    assert user["userPrincipalName"] == "new.person_northwind.example#EXT#@contoso.onmicrosoft.com"
    assert (user["userType"], user["externalUserState"], user["creationType"], user["usageLocation"]) == (
        "Guest",
        "PendingAcceptance",
        "Invitation",
        "NL",
    )
    with pytest.raises(ValueError, match="already exists"):
        graph_sim.invite_guest("new.person@northwind.example")


def test_api_changes_fire_but_licenses_and_groups_do_not(
    graph_http: httpx.Client,
    graph_sim: GraphSimulator,
    receiver: Receiver,
    graph_http_as: Callable[..., httpx.Client],
):
    create(graph_http, graph_sim, receiver)
    deleted_only = create(graph_http, graph_sim, receiver, changeType="deleted")
    unlicensed = graph_sim.named("accepted-unlicensed")
    sku = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"
    license_body = {"addLicenses": [{"skuId": sku, "disabledPlans": []}], "removeLicenses": []}
    assert graph_http.post(f"/users/{unlicensed}/assignLicense", json=license_body).status_code == 200
    group = graph_sim.named("group-exclusions")
    ref = {"@odata.id": f"{graph_sim.base_url}/directoryObjects/{unlicensed}"}
    members_writer = graph_http_as("GroupMember.ReadWrite.All")
    assert members_writer.post(f"/groups/{group}/members/$ref", json=ref).status_code == 204
    graph_sim.wait_for_idle()
    assert graph_sim.deliveries == []
    stale = graph_sim.named("stale-all")
    assert graph_http.patch(f"/users/{stale}", json={"accountEnabled": False}).status_code == 204
    assert graph_http.delete(f"/users/{stale}").status_code == 204  # soft delete: `updated`
    assert graph_http.post(f"/directory/deletedItems/{stale}/restore").status_code == 200
    records = graph_sim.wait_for_deliveries(3)
    graph_sim.wait_for_idle()
    assert [(r["user_id"], r["change_type"]) for r in records] == [(stale, "updated")] * 3
    sequence = [r["sequence_number"] for r in records]
    assert len(set(sequence)) == 3  # each change its own number; deliveries run concurrently, in any order
    assert all(r["subscription_id"] != deleted_only["id"] for r in records)


def test_duplicates_deliver_the_same_notification_again(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver
):
    create(graph_http, graph_sim, receiver)
    graph_sim.notifications.configure(duplicates=2)
    graph_sim.redeem_invitation("pending-old")
    records = graph_sim.wait_for_deliveries(3)
    graph_sim.wait_for_idle()
    assert len(graph_sim.deliveries) == 3 and [r["copy"] for r in records] == [0, 1, 2]
    notes = receiver.notifications()
    assert len(notes) == 3 and all(n == notes[0] for n in notes)


def test_failing_receiver_is_retried_then_dropped(
    graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver
):
    create(graph_http, graph_sim, receiver)
    graph_sim.notifications.configure(retry_delays_s=FAST_RETRIES)
    receiver.statuses = [503, 500, 500]
    graph_sim.redeem_invitation("pending-old")
    graph_sim.wait_for_idle()
    attempts = graph_sim.deliveries
    assert [(r["attempt"], r["status"], r["gave_up"]) for r in attempts] == [
        (1, 503, False),
        (2, 500, False),
        (3, 500, True),
    ]
    assert len({r["sequence_number"] for r in attempts}) == 1
    [dropped] = graph_sim.notifications.dropped
    assert dropped["reason"] == "retries exhausted" and dropped["sequence_number"] == attempts[0]["sequence_number"]
    receiver.statuses = [500]  # fails once, then the retry succeeds
    graph_sim.redeem_invitation("pending-recent")
    graph_sim.wait_for_idle()
    assert [(r["attempt"], r["ok"]) for r in graph_sim.deliveries[3:]] == [(1, False), (2, True)]


def test_slow_receiver_times_out(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    create(graph_http, graph_sim, receiver)
    graph_sim.notifications.configure(retry_delays_s=(), delivery_timeout_s=0.2)
    receiver.notify_sleep_s = 0.6
    started = time.monotonic()
    graph_sim.redeem_invitation("pending-old")
    assert time.monotonic() - started < 0.2  # the change never waits for the webhook
    [record] = graph_sim.wait_for_deliveries(1)
    assert record["error"] == "timeout" and record["status"] is None and record["gave_up"]


def test_batching_and_dropping(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    first = create(graph_http, graph_sim, receiver)
    second = create(graph_http, graph_sim, receiver)
    graph_sim.notifications.configure(batch_window_s=0.2)
    graph_sim.redeem_invitation("pending-old")
    graph_sim.redeem_invitation("pending-recent")
    graph_sim.wait_for_idle()
    [post] = receiver.posts
    assert len(post["body"]["value"]) == 4
    assert {n["subscriptionId"] for n in post["body"]["value"]} == {first["id"], second["id"]}
    assert {r["batch_size"] for r in graph_sim.deliveries} == {4}
    graph_sim.notifications.configure(drop_rate=1.0, seed=7)
    graph_sim.update_user("stale-all", displayName="Renamed")
    graph_sim.wait_for_idle()
    assert len(receiver.posts) == 1
    assert [d["reason"] for d in graph_sim.notifications.dropped] == ["drop_rate", "drop_rate"]


def test_delay_before_first_delivery(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    create(graph_http, graph_sim, receiver)
    graph_sim.notifications.configure(delay_s=0.3)
    graph_sim.redeem_invitation("pending-old")
    [record] = graph_sim.wait_for_deliveries(1)
    assert record["sent_at"] - record["changed_at"] >= 0.3


def test_lifecycle_events(graph_http: httpx.Client, graph_sim: GraphSimulator, receiver: Receiver):
    """concepts/change-notifications-lifecycle-events.md: for /users only reauthorizationRequired, and only to a
    subscription that has a lifecycleNotificationUrl (never to its notificationUrl)."""
    sub = create(graph_http, graph_sim, receiver, lifecycleNotificationUrl=receiver.lifecycle_url)
    plain = create(graph_http, graph_sim, receiver)
    assert graph_sim.send_lifecycle_event(sub["id"], "reauthorizationRequired") is True
    assert graph_sim.send_lifecycle_event(plain["id"], "reauthorizationRequired") is False
    graph_sim.wait_for_idle()
    [event] = receiver.notifications("/api/graph/lifecycle")
    assert event == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": graph_sim.store.tenant["id"],
        "clientState": SECRET,
        "lifecycleEvent": "reauthorizationRequired",
    }
    assert receiver.notifications() == []  # no lifecycle URL: nothing, not even to the notification URL
    assert graph_sim.notifications.dropped[-1]["reason"] == "no lifecycleNotificationUrl"
    assert {d["kind"] for d in graph_sim.deliveries} == {"lifecycle"}
    for outlook_only in ("subscriptionRemoved", "missed"):
        with pytest.raises(ValueError, match="does not send"):
            graph_sim.send_lifecycle_event(sub["id"], outlook_only)
    with pytest.raises(ValueError, match="lifecycle event"):
        graph_sim.send_lifecycle_event(plain["id"], "renewed")
    with pytest.raises(KeyError):
        graph_sim.send_lifecycle_event("no-such-subscription", "reauthorizationRequired")


def test_expire_delta_links(graph_http: httpx.Client, graph_sim: GraphSimulator):
    latest = graph_http.get("/users/delta", params={"$deltatoken": "latest"}).json()["@odata.deltaLink"]
    assert graph_http.get(latest).status_code == 200
    graph_sim.expire_delta_links()
    expired = graph_http.get(latest)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "syncStateNotFound"
    fresh = graph_http.get("/users/delta", params={"$deltatoken": "latest"}).json()["@odata.deltaLink"]
    assert graph_http.get(fresh).status_code == 200


# the real SDK -----------------------------------------------------------------------------------------
async def test_sdk_creates_and_renews_a_subscription(graph_sim: GraphSimulator, receiver: Receiver):
    client, _ = build_client(graph_sim)
    expiration = graph_sim.clock.now() + timedelta(days=2)
    body = Subscription(
        change_type="updated,deleted",
        notification_url=receiver.url,
        lifecycle_notification_url=receiver.url,
        resource="/users",
        expiration_date_time=expiration,
        client_state=SECRET,
    )
    created = await client.subscriptions.post(body)
    assert created is not None and created.id and created.client_state == SECRET
    assert isinstance(created.expiration_date_time, datetime) and created.expiration_date_time == expiration
    assert created.latest_supported_tls_version == "v1_2"
    renewed = await client.subscriptions.by_subscription_id(created.id).patch(
        Subscription(expiration_date_time=expiration + timedelta(days=20))
    )
    assert renewed is not None and renewed.expiration_date_time == expiration + timedelta(days=20)
    listed = await client.subscriptions.get()
    assert listed is not None and [s.id for s in listed.value or []] == [created.id]
    graph_sim.redeem_invitation("pending-recent")
    records = await graph_sim.wait_for_deliveries_async(1)
    assert records[0]["subscription_id"] == created.id
    await client.subscriptions.by_subscription_id(created.id).delete()
    with pytest.raises(ODataError) as caught:
        await client.subscriptions.by_subscription_id(created.id).get()
    assert caught.value.response_status_code == 404
