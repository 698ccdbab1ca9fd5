"""Use case: keep the /users change-notification subscription alive, and answer its lifecycle events.

A timer calls `ensure_subscription`: create it if we have none (adopting one Graph already has for our URL,
so a lost state record never leads to duplicates), renew it well before it expires (Graph deletes expired
subscriptions), recreate it when Graph no longer knows it or its URL or clientState changed (rotation). A
ledger lease makes overlapping runs (two instances, a retry) act one at a time. Its id and expiry live in state,
where the webhook reads the ids it accepts.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.directory import GraphSubscription
from shared.domain.messages import LifecycleEvent
from shared.ports.graph import GraphError, SubscriptionGraph
from shared.ports.state import Record, StateStore, exclusively
from shared.services.audit import Auditor

log = logging.getLogger(__name__)

ACTOR = "subscription-keeper"
RECORD_KIND = "subscription"
RECORD_KEY = "users"
RESOURCE = "/users"
CHANGE_TYPE = "updated,deleted"
LEASE_SECONDS = 120


class SubscriptionQuotaExceeded(Exception):
    """Graph refused a new subscription: the app or tenant has too many. A human must clean up."""


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str
    lifetime: timedelta
    renew_before: timedelta


@dataclass(frozen=True, slots=True)
class SubscriptionDeps:
    graph: SubscriptionGraph
    state: StateStore
    config: SubscriptionConfig
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"keeper-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class SubscriptionOutcome:
    action: str
    """created | adopted | renewed | recreated | unchanged | busy"""
    subscription_id: str | None = None
    expires: datetime | None = None


async def known_subscription_ids(state: StateStore) -> frozenset[str]:
    """The ids the webhook accepts: the current one and the one it replaced (notifications in flight)."""
    record = await state.get(RECORD_KIND, RECORD_KEY)
    if record is None:
        return frozenset()
    ids = [record.value.get("id"), record.value.get("previousId")]
    return frozenset(i for i in ids if isinstance(i, str))


async def ensure_subscription(deps: SubscriptionDeps) -> SubscriptionOutcome:
    async with exclusively(deps.state, ACTOR, RECORD_KEY, owner=deps.owner, lease_seconds=LEASE_SECONDS) as mine:
        if not mine:
            log.info("subscription keeper: another run holds the lease; nothing to do")
            return SubscriptionOutcome("busy")
        return await _ensure(deps)


async def _ensure(deps: SubscriptionDeps) -> SubscriptionOutcome:
    record = await deps.state.get(RECORD_KIND, RECORD_KEY)
    now = deps.clock()
    current = None
    if record is not None and isinstance(record.value.get("id"), str):
        current = await deps.graph.get_subscription(str(record.value["id"]))
    if current is None and record is None:
        adopted = await _adopt(deps)
        if adopted is not None:
            current = adopted
            await _save(deps, record, adopted)
            await _audit(deps, "adopt-subscription", adopted, "a subscription for our URL already existed")
            return SubscriptionOutcome("adopted", adopted.id, adopted.expiration)
    if current is None:
        created = await _create(deps, now)
        action = "created" if record is None else "recreated"
        reason = "no subscription yet" if record is None else "Graph no longer knows the subscription"
        await _save(deps, record, created)
        await _audit(deps, f"{action[:-1]}-subscription", created, reason)
        return SubscriptionOutcome(action, created.id, created.expiration)
    stale_reason = _needs_recreation(deps, record, current)
    if stale_reason:
        # Graph can PATCH only the expiry: a new URL or clientState takes a new subscription. Notifications
        # dropped in between are read again by the users/delta backstop.
        await deps.graph.delete_subscription(current.id)
        created = await _create(deps, now)
        await _save(deps, record, created)
        await _audit(deps, "recreate-subscription", created, stale_reason)
        return SubscriptionOutcome("recreated", created.id, created.expiration)
    if current.expiration - now <= deps.config.renew_before:
        renewed = await deps.graph.renew_subscription(current.id, now + deps.config.lifetime)
        await _save(deps, record, renewed)
        await _audit(deps, "renew-subscription", renewed, f"expires {current.expiration.isoformat()}")
        return SubscriptionOutcome("renewed", renewed.id, renewed.expiration)
    return SubscriptionOutcome("unchanged", current.id, current.expiration)


def client_state_fingerprint(client_state: str) -> str:
    """What state keeps to notice a rotated clientState: a short SHA-256, never the secret itself."""
    return hashlib.sha256(client_state.encode("utf-8")).hexdigest()[:16]


def _needs_recreation(deps: SubscriptionDeps, record: Record | None, current: GraphSubscription) -> str:
    if current.notification_url != deps.config.notification_url:
        return "the notification URL changed"
    if (current.lifecycle_notification_url or None) != deps.config.lifecycle_notification_url:
        # Graph sends /users its only lifecycle event (reauthorizationRequired) to this URL and nowhere else, and
        # it cannot be added or changed by PATCH (change-notifications-lifecycle-events.md): a new subscription.
        return "the lifecycle notification URL changed"
    kept = record.value.get("clientStateFingerprint") if record is not None else None
    if isinstance(kept, str) and kept != client_state_fingerprint(deps.config.client_state):
        return "the clientState was rotated"
    return ""


async def _adopt(deps: SubscriptionDeps) -> GraphSubscription | None:
    """Our URL's /users subscription, made before our state knew it (a redeploy, a lost record). One without our
    lifecycle URL would never hear reauthorizationRequired: it is deleted, and a new one made instead."""
    adopted = None
    for sub in await deps.graph.list_subscriptions():
        if sub.resource.strip("/").lower() != "users" or sub.notification_url != deps.config.notification_url:
            continue
        if adopted is None and (sub.lifecycle_notification_url or None) == deps.config.lifecycle_notification_url:
            adopted = sub
        else:
            log.warning("deleting subscription %s for our URL: not adoptable (lifecycle URL, or a duplicate)", sub.id)
            await deps.graph.delete_subscription(sub.id)
    return adopted


async def _create(deps: SubscriptionDeps, now: datetime) -> GraphSubscription:
    try:
        return await deps.graph.create_subscription(
            resource=RESOURCE,
            change_type=CHANGE_TYPE,
            notification_url=deps.config.notification_url,
            lifecycle_notification_url=deps.config.lifecycle_notification_url,
            client_state=deps.config.client_state,
            expiration=now + deps.config.lifetime,
        )
    except GraphError as exc:
        if exc.status == 403:
            raise SubscriptionQuotaExceeded(
                "Graph refused to create the /users subscription (403): the subscription quota (100 per app per "
                "tenant, 1,000 per tenant) may be used up, or the app lacks User.Read.All. Delete unused "
                f"subscriptions (GET /subscriptions) and check permissions. Graph said: {exc.message}"
            ) from exc
        raise


async def _save(deps: SubscriptionDeps, record: Record | None, sub: GraphSubscription) -> None:
    previous = record.value.get("id") if record is not None else None
    value = {
        "id": sub.id,
        "expiresAt": sub.expiration.isoformat(),
        "previousId": previous if previous != sub.id else (record.value.get("previousId") if record else None),
        "clientStateFingerprint": client_state_fingerprint(deps.config.client_state),
    }
    await deps.state.put(RECORD_KIND, RECORD_KEY, value, etag=record.etag if record is not None else None)


async def _audit(deps: SubscriptionDeps, action: str, sub: GraphSubscription, reason: str) -> None:
    evidence = {"expiresAt": sub.expiration.isoformat(), "resource": sub.resource}
    await Auditor(deps.state, ACTOR, deps.clock).record(action, sub.id, reason=reason, evidence=evidence)


async def handle_lifecycle_event(message: LifecycleEvent, deps: SubscriptionDeps) -> str:
    """reauthorizationRequired -> reauthorize (renew if that fails): the one event Graph sends for /users.

    subscriptionRemoved and missed are documented for Outlook and Teams resources only; should one ever come,
    ensure (recreate) answers it, and the keeper and delta timers cover the same ground anyway."""
    subscription_id, event = message.subscription_id, message.lifecycle_event
    if event == "reauthorizationRequired":
        try:
            await deps.graph.reauthorize_subscription(subscription_id)
            return "reauthorized"
        except GraphError as exc:
            if exc.not_found:
                await ensure_subscription(deps)
                return "recreated"
            log.warning("reauthorize failed (%s); renewing instead", exc)
            await deps.graph.renew_subscription(subscription_id, deps.clock() + deps.config.lifetime)
            return "renewed"
    if message.needs_resync:
        outcome = await ensure_subscription(deps)
        return f"ensured:{outcome.action}"
    log.warning("unknown lifecycle event %r for subscription %s ignored", event, subscription_id)
    return "ignored"
