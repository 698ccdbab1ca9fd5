"""Change notifications for /users: subscriptions, the validation handshake and background delivery.

The hub is shared by the HTTP handlers (on the simulator's event loop) and by test helpers (on the test
thread), so its state sits behind one lock. A user change in the store calls `user_changed` synchronously,
under the store's lock; the hub only builds the notifications there and hands them to the simulator's loop,
which delivers them in the background, so the API call that caused a change never waits for a webhook.

Graph's behaviour mirrored here (see GRAPH-FACTS.md): at most 41,760 minutes of lifetime for users, a 10 s
validation handshake, a 3 s delivery timeout, retries on non-2xx or timeout, at-least-once delivery
(`duplicates`), batching of several notifications into one POST, and lazy deletion of expired subscriptions
on the simulator clock. Graph retries for up to 4 hours; the simulator retries on a short real-time schedule
(`retry_delays_s`) so tests stay fast.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote_plus, urlsplit

import aiohttp
from yarl import URL

from local.graph_sim.clock import SimClock, iso_z
from local.graph_sim.errors import GraphError

log = logging.getLogger(__name__)
Json = dict[str, Any]

MAX_USER_LIFETIME = timedelta(minutes=41_760)
USER_CHANGE_TYPES = ("updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
USERS_LIFECYCLE_EVENTS = ("reauthorizationRequired",)
"""What Graph sends for /users (concepts/change-notifications-lifecycle-events.md, "Supported resources"): only
reauthorizationRequired, and nothing at all to a subscription created without a lifecycleNotificationUrl."""
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
DEFAULT_QUOTA = 100  # per app per tenant; the simulator serves one app
DEFAULT_VALIDATION_TIMEOUT_S = 10.0
DEFAULT_DELIVERY_TIMEOUT_S = 3.0
DEFAULT_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
# The simulated app (the subscription's applicationId) and its service principal (creatorId).
SIM_APPLICATION_ID = "5f6c1a52-7e2b-4f0e-9d8a-3c4b2a1e0f91"
SIM_CREATOR_ID = "8a3e5d10-2b4c-4e6f-a1b3-c5d7e9f0a2b4"

VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
)
VALIDATION_TIMED_OUT = "Subscription validation request timed out."
CHANGE_CONTENT_TYPE = "application/json; charset=utf-8"


def graph_datetime(moment: datetime) -> str:
    """Subscriptions echo expirationDateTime with 7 fractional digits ("2016-11-20T18:23:45.9356913Z")."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint_url(value: Any, name: str) -> str:
    """https, or plain http to a loopback host (a local functions host); anything else is refused."""
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"The {name} is missing or is not a valid URL.")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return value
    raise GraphError(
        400,
        "InvalidRequest",
        f"Invalid {name} '{value}': the notification endpoint must use https "
        "(the simulator also accepts plain http to a loopback host).",
    )


def validation_token() -> str:
    """Shaped like Graph's, plus characters that only survive a correct URL decoding (+ / = & % #)."""
    nonce = base64.b64encode(secrets.token_bytes(9)).decode()
    return (
        f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()} {nonce}+/=&%#"
    )


def with_query_param(url: str, name: str, value: str) -> URL:
    """Append name=value (form-encoded, as Graph does) and keep the URL's own query (?code=...)."""
    base = str(URL(url))
    separator = "&" if urlsplit(base).query else "?"
    return URL(f"{base}{separator}{name}={quote_plus(value)}", encoded=True)


@dataclass
class Subscription:
    id: str
    resource: str
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: datetime
    application_id: str = SIM_APPLICATION_ID
    creator_id: str = SIM_CREATOR_ID
    latest_supported_tls_version: str = "v1_2"
    reauthorization_required: bool = False

    @property
    def change_type(self) -> str:
        return ",".join(self.change_types)

    def to_graph(self) -> Json:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": graph_datetime(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.latest_supported_tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


@dataclass
class DeliveryOptions:
    duplicates: int = 0
    delay_s: float = 0.0
    batch_window_s: float = 0.0
    drop_rate: float = 0.0
    retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S


@dataclass
class _Outgoing:
    kind: str  # "change" | "lifecycle"
    subscription_id: str
    url: str
    payload: Json
    changed_at: float  # wall clock (time.time()) when the change happened
    user_id: str | None = None
    sequence_number: int | None = None
    change_type: str | None = None
    lifecycle_event: str | None = None


@dataclass
class _Batch:
    items: list[_Outgoing] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class NotificationHub:
    """Subscriptions on /users and the delivery of their change and lifecycle notifications."""

    def __init__(self, clock: SimClock, tenant_id: str) -> None:
        self.clock = clock
        self.tenant_id = tenant_id
        self.subscription_quota = DEFAULT_QUOTA
        self.validation_timeout_s = DEFAULT_VALIDATION_TIMEOUT_S
        self.deliveries: list[Json] = []  # one record per notification per POST attempt
        self.dropped: list[Json] = []  # notifications never delivered (drop_rate, retries exhausted, ...)
        self.validations: list[Json] = []  # one record per validation handshake
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._subscriptions: dict[str, Subscription] = {}
        self._sequence = 0
        self._pending = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._batches: dict[str, _Batch] = {}
        self.options = DeliveryOptions()
        self._random = random.Random()

    # options ---------------------------------------------------------------------------------------
    def configure(
        self,
        duplicates: int = 0,
        delay_s: float = 0.0,
        batch_window_s: float = 0.0,
        drop_rate: float = 0.0,
        seed: int | None = None,
        retry_delays_s: Iterable[float] = DEFAULT_RETRY_DELAYS_S,
        delivery_timeout_s: float = DEFAULT_DELIVERY_TIMEOUT_S,
    ) -> None:
        """Set every delivery option at once (what is not given goes back to its default)."""
        delays = tuple(float(d) for d in retry_delays_s)
        if duplicates < 0 or delay_s < 0 or batch_window_s < 0 or delivery_timeout_s <= 0:
            raise ValueError("duplicates, delay_s and batch_window_s must be >= 0, delivery_timeout_s > 0")
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError("drop_rate must be within [0, 1]")
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must be >= 0")
        with self._lock:
            self.options = DeliveryOptions(duplicates, delay_s, batch_window_s, drop_rate, delays, delivery_timeout_s)
            self._random = random.Random(seed)

    # subscriptions ---------------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Graph deletes a subscription once it expires; evaluated lazily on the simulator clock."""
        now = self.clock.now()
        for sub_id, sub in list(self._subscriptions.items()):
            if sub.expiration < now:
                del self._subscriptions[sub_id]

    def live(self) -> list[Subscription]:
        with self._lock:
            self._sweep()
            return list(self._subscriptions.values())

    def get(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            self._sweep()
            return self._subscriptions.get(subscription_id)

    def check_quota(self) -> None:
        with self._lock:
            self._sweep()
            if len(self._subscriptions) >= self.subscription_quota:
                raise GraphError(
                    403,
                    "ExtensionError",
                    "Operation: Create; Exception: [Status Code: Forbidden; Reason: The number of subscriptions "
                    f"for this application in this tenant has reached the limit of {self.subscription_quota}.]",
                )

    def add(self, sub: Subscription) -> Subscription:
        with self._lock:
            self.check_quota()
            self._subscriptions[sub.id] = sub
            return sub

    def remove(self, subscription_id: str) -> bool:
        with self._lock:
            self._sweep()
            return self._subscriptions.pop(subscription_id, None) is not None

    # validation handshake --------------------------------------------------------------------------
    async def validate_endpoint(self, url: str) -> None:
        """POST ?validationToken=... and require 200, text/plain and exactly the decoded token back."""
        token = validation_token()
        target = with_query_param(url, "validationToken", token)
        started = time.perf_counter()
        record: Json = {"url": url, "status": None, "error": None, "ok": False}
        try:
            session = self._client()
            timeout = aiohttp.ClientTimeout(total=self.validation_timeout_s)
            async with session.post(
                target, data=b"", headers={"Content-Type": "text/plain"}, timeout=timeout
            ) as response:
                body = await response.read()
                record["status"] = response.status
                if response.status != 200:
                    record["error"] = f"status {response.status}"
                elif response.content_type.lower() != "text/plain":
                    record["error"] = f"content type {response.content_type!r}, not text/plain"
                elif body.decode("utf-8", "replace") != token:
                    record["error"] = "the body is not the decoded validation token"
                else:
                    record["ok"] = True
        except TimeoutError:
            record["error"] = "timeout"
        except aiohttp.ClientError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        with self._lock:
            self.validations.append(record)
        if not record["ok"]:
            log.info("graph-sim: validation of %s failed: %s", url, record["error"])
            message = VALIDATION_TIMED_OUT if record["error"] == "timeout" else VALIDATION_FAILED
            raise GraphError(400, "InvalidRequest", message)

    # change notifications --------------------------------------------------------------------------
    def user_changed(self, user_id: str, change_type: str) -> None:
        """Called by the store (under its lock) for every change to a user: build and hand off."""
        outgoing: list[_Outgoing] = []
        now_wall = time.time()
        with self._lock:
            self._sweep()
            for sub in self._subscriptions.values():
                if change_type not in sub.change_types:
                    continue
                self._sequence += 1
                item = _Outgoing(
                    kind="change",
                    subscription_id=sub.id,
                    url=sub.notification_url,
                    payload=self._change_payload(sub, user_id, change_type, self._sequence),
                    changed_at=now_wall,
                    user_id=user_id,
                    sequence_number=self._sequence,
                    change_type=change_type,
                )
                if self.options.drop_rate and self._random.random() < self.options.drop_rate:
                    self.dropped.append(self._summary(item, "drop_rate"))
                    continue
                outgoing.append(item)
            self._hand_off(outgoing)

    def _change_payload(self, sub: Subscription, user_id: str, change_type: str, sequence: int) -> Json:
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": graph_datetime(sub.expiration),
            "changeType": change_type,
            "resource": f"Users/{user_id}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.User",
                "@odata.id": f"Users/{user_id}",
                "id": user_id,
                "organizationId": self.tenant_id,
                "sequenceNumber": sequence,
            },
            "clientState": sub.client_state,
            "tenantId": self.tenant_id,
        }

    def send_lifecycle_event(self, subscription_id: str, event: str) -> bool:
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle event must be one of {LIFECYCLE_EVENTS}, not {event!r}")
        if event not in USERS_LIFECYCLE_EVENTS:
            raise ValueError(
                f"Graph does not send {event!r} for /users subscriptions: only {USERS_LIFECYCLE_EVENTS} "
                "(subscriptionRemoved and missed are for Outlook and Teams resources)"
            )
        with self._lock:
            sub = self.get(subscription_id)
            if sub is None:
                raise KeyError(subscription_id)
            if not sub.lifecycle_notification_url:
                self.dropped.append(
                    {"reason": "no lifecycleNotificationUrl", "subscription_id": sub.id, "lifecycle_event": event}
                )
                return False
            payload = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": graph_datetime(sub.expiration),
                "tenantId": self.tenant_id,
                "clientState": sub.client_state,
                "lifecycleEvent": event,
            }
            if event == "reauthorizationRequired":
                sub.reauthorization_required = True
            elif event == "subscriptionRemoved":
                self._subscriptions.pop(sub.id, None)
            item = _Outgoing(
                kind="lifecycle",
                subscription_id=sub.id,
                url=sub.lifecycle_notification_url,
                payload=payload,
                changed_at=time.time(),
                lifecycle_event=event,
            )
            self._hand_off([item])
            return True

    def _hand_off(self, items: list[_Outgoing]) -> None:
        if not items:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            for item in items:
                self.dropped.append(self._summary(item, "simulator not running"))
            return
        self._pending += len(items)
        loop.call_soon_threadsafe(self._enqueue, items)

    # delivery (on the simulator's loop) ------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def _spawn(self, url: str, items: list[_Outgoing]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._deliver(url, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, items: list[_Outgoing]) -> None:
        window = self.options.batch_window_s
        for item in items:
            if item.kind != "change" or window <= 0:
                self._spawn(item.url, [item])
                continue
            batch = self._batches.setdefault(item.url, _Batch())
            batch.items.append(item)
            if batch.timer is None:
                assert self._loop is not None
                batch.timer = self._loop.call_later(window, self._flush, item.url)

    def _flush(self, url: str) -> None:
        batch = self._batches.pop(url, None)
        if batch is not None and batch.items:
            self._spawn(url, batch.items)

    async def _deliver(self, url: str, items: list[_Outgoing]) -> None:
        try:
            options = self.options
            if options.delay_s:
                await asyncio.sleep(options.delay_s)
            copies = 1 + (options.duplicates if items[0].kind == "change" else 0)
            for copy in range(copies):
                await self._post_with_retries(url, items, copy, options)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("graph-sim: notification delivery to %s failed", url)
        finally:
            with self._cond:
                self._pending -= len(items)
                self._cond.notify_all()

    async def _post_with_retries(self, url: str, items: list[_Outgoing], copy: int, options: DeliveryOptions) -> None:
        body = json.dumps({"value": [item.payload for item in items]}, separators=(",", ":")).encode()
        attempts = 1 + len(options.retry_delays_s)
        for attempt in range(1, attempts + 1):
            if attempt > 1 and not any(i.kind == "lifecycle" or self.get(i.subscription_id) for i in items):
                return  # every subscription in the POST is gone: Graph stops retrying
            status: int | None = None
            error: str | None = None
            sent_at = time.time()
            started = time.perf_counter()
            try:
                timeout = aiohttp.ClientTimeout(total=options.delivery_timeout_s)
                headers = {"Content-Type": CHANGE_CONTENT_TYPE}
                async with self._client().post(URL(url), data=body, headers=headers, timeout=timeout) as response:
                    await response.read()
                    status = response.status
            except TimeoutError:
                error = "timeout"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
            latency_ms = round((time.perf_counter() - started) * 1000, 1)
            ok = status is not None and 200 <= status < 300
            final = ok or attempt == attempts
            self._record(items, attempt, copy, status, error, latency_ms, sent_at, gave_up=final and not ok)
            if ok:
                return
            if attempt < attempts:
                await asyncio.sleep(options.retry_delays_s[attempt - 1])
        with self._lock:
            for item in items:
                self.dropped.append(self._summary(item, "retries exhausted"))

    def _summary(self, item: _Outgoing, reason: str) -> Json:
        return {
            "kind": item.kind,
            "subscription_id": item.subscription_id,
            "user_id": item.user_id,
            "sequence_number": item.sequence_number,
            "change_type": item.change_type,
            "lifecycle_event": item.lifecycle_event,
            "reason": reason,
            "at": iso_z(self.clock.now()),
        }

    def _record(
        self,
        items: list[_Outgoing],
        attempt: int,
        copy: int,
        status: int | None,
        error: str | None,
        latency_ms: float,
        sent_at: float,
        gave_up: bool,
    ) -> None:
        at = iso_z(self.clock.now())
        with self._cond:
            for item in items:
                self.deliveries.append(
                    {
                        "kind": item.kind,
                        "subscription_id": item.subscription_id,
                        "user_id": item.user_id,
                        "sequence_number": item.sequence_number,
                        "change_type": item.change_type,
                        "lifecycle_event": item.lifecycle_event,
                        "url": item.url,
                        "attempt": attempt,
                        "copy": copy,
                        "batch_size": len(items),
                        "status": status,
                        "error": error,
                        "ok": status is not None and 200 <= status < 300,
                        "gave_up": gave_up,
                        "latency_ms": latency_ms,
                        "at": at,
                        "sent_at": sent_at,
                        "changed_at": item.changed_at,
                    }
                )
            self._cond.notify_all()

    # waiting (for tests and benchmarks) ------------------------------------------------------------
    def wait_for_deliveries(
        self, n: int, timeout: float = 5.0, where: Callable[[Json], bool] | None = None
    ) -> list[Json]:
        """Block until at least n delivery records (matching `where`) exist; return the matching ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [d for d in self.deliveries if where is None or where(d)]
                if len(found) >= n:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {n} deliveries after {timeout} s")
                self._cond.wait(remaining)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no notification is queued, batched, delayed or being retried."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self._pending} notifications still in flight after {timeout} s")
                self._cond.wait(remaining)

    async def aclose(self) -> None:
        for batch in self._batches.values():
            if batch.timer is not None:
                batch.timer.cancel()
        self._batches.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        with self._cond:
            self._pending = 0
            self._loop = None
            self._cond.notify_all()
