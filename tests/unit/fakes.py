"""In-memory fakes of the Graph gateway's faces, for fast service-layer tests (no HTTP, no SDK).

They keep Graph's semantics that the services rely on (seats, usage location needed, duplicate group member);
the real gateway is checked against the simulator in tests/integration.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from shared.adapters.graph import GraphError
from shared.domain.directory import DeltaPage, DirectoryUser, GraphSubscription, OutgoingMail, SubscribedSku


class FakeGraph:
    def __init__(self, users: Sequence[DirectoryUser] = (), skus: Sequence[SubscribedSku] = ()) -> None:
        self.users = {u.id: u for u in users}
        self.skus = {s.sku_id: s for s in skus}
        self.groups: dict[str, set[str]] = {}
        self.outbox: list[OutgoingMail] = []
        self.calls: list[tuple[str, str]] = []
        self.unreadable_reads: dict[str, int] = {}
        """user id -> how many more reads return None (a guest not yet replicated)."""
        self.usage_location_lag: dict[str, int] = {}
        """user id -> how many more assignLicense calls fail as if the usage location were not set yet."""

    async def get_user(self, user_id: str, *, with_identities: bool = False) -> DirectoryUser | None:
        self.calls.append(("get_user", user_id))
        if self.unreadable_reads.get(user_id, 0) > 0:
            self.unreadable_reads[user_id] -= 1
            return None
        return self.users.get(user_id)

    async def list_subscribed_skus(self) -> list[SubscribedSku]:
        self.calls.append(("list_subscribed_skus", ""))
        return list(self.skus.values())

    async def set_usage_location(self, user_id: str, country: str) -> None:
        self.calls.append(("set_usage_location", user_id))
        self.users[user_id] = replace(self.users[user_id], usage_location=country)

    async def assign_license(self, user_id: str, sku_id: str, disabled_plans: Sequence[str] = ()) -> None:
        self.calls.append(("assign_license", user_id))
        user = self.users[user_id]
        if not user.usage_location or self.usage_location_lag.get(user_id, 0) > 0:
            if self.usage_location_lag.get(user_id, 0) > 0:
                self.usage_location_lag[user_id] -= 1
            raise GraphError(
                400, "Request_BadRequest", "License assignment cannot be done for user with invalid usage location."
            )
        if sku_id in user.assigned_sku_ids:
            return
        sku = self.skus[sku_id]
        if sku.free_units <= 0:
            raise GraphError(
                400, "Request_BadRequest", f"Subscription with SKU {sku_id} does not have any available licenses."
            )
        self.skus[sku_id] = replace(sku, consumed_units=sku.consumed_units + 1)
        self.users[user_id] = replace(user, assigned_sku_ids=user.assigned_sku_ids | {sku_id})

    async def add_group_member(self, group_id: str, user_id: str) -> bool:
        self.calls.append(("add_group_member", user_id))
        members = self.groups.setdefault(group_id, set())
        if user_id in members:
            return False
        members.add(user_id)
        return True

    async def send_mail(self, mail: OutgoingMail) -> None:
        self.calls.append(("send_mail", mail.sender))
        self.outbox.append(mail)

    def count(self, call: str) -> int:
        return sum(1 for name, _ in self.calls if name == call)


class FakeSubscriptions:
    """Graph's /subscriptions as the keeper sees it (no handshake: that is the simulator's job)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.subs: dict[str, GraphSubscription] = {}
        self.calls: list[str] = []
        self.quota = 100
        self.reauthorize_fails: GraphError | None = None

    def _live(self) -> None:
        for sub_id, sub in list(self.subs.items()):
            if sub.expiration <= self.clock():
                del self.subs[sub_id]

    async def create_subscription(
        self,
        *,
        resource: str,
        change_type: str,
        notification_url: str,
        lifecycle_notification_url: str | None,
        client_state: str,
        expiration: datetime,
    ) -> GraphSubscription:
        self.calls.append("create")
        self._live()
        if len(self.subs) >= self.quota:
            raise GraphError(403, "ExtensionError", "Subscription quota exceeded for this application.")
        sub = GraphSubscription(
            str(uuid.uuid4()), resource, change_type, notification_url, lifecycle_notification_url, expiration
        )
        self.subs[sub.id] = sub
        return sub

    async def get_subscription(self, subscription_id: str) -> GraphSubscription | None:
        self.calls.append("get")
        self._live()
        return self.subs.get(subscription_id)

    async def list_subscriptions(self) -> list[GraphSubscription]:
        self.calls.append("list")
        self._live()
        return list(self.subs.values())

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> GraphSubscription:
        self.calls.append("renew")
        self._live()
        if subscription_id not in self.subs:
            raise GraphError(404, "ResourceNotFound", "subscription not found")
        self.subs[subscription_id] = replace(self.subs[subscription_id], expiration=expiration)
        return self.subs[subscription_id]

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        self.calls.append("reauthorize")
        if self.reauthorize_fails:
            raise self.reauthorize_fails

    async def delete_subscription(self, subscription_id: str) -> None:
        self.calls.append("delete")
        self.subs.pop(subscription_id, None)


class FakeDelta:
    """users/delta as pages: `pages` for a full pass, `changes` for what a deltaLink returns next."""

    def __init__(self, users: Sequence[DirectoryUser], page_size: int = 2) -> None:
        self.users = list(users)
        self.page_size = page_size
        self.version = 0
        self.changes: list[DirectoryUser] = []
        self.expired = False
        self.calls: list[str | None] = []

    def change(self, user: DirectoryUser) -> None:
        self.version += 1
        self.changes.append(user)

    async def users_delta(self, link: str | None = None, *, start_from_now: bool = False) -> DeltaPage:
        self.calls.append(link)
        if start_from_now:
            return DeltaPage((), (), None, f"delta:{self.version}")
        if link and link.startswith("delta:"):
            if self.expired:
                raise GraphError(400, "syncStateNotFound", "The sync state has expired.")
            since = int(link.split(":")[1])
            changed = tuple(self.changes[since:])
            return DeltaPage(changed, (), None, f"delta:{self.version}")
        start = int(link.split(":")[1]) if link else 0
        chunk = tuple(self.users[start : start + self.page_size])
        nxt = start + self.page_size
        if nxt < len(self.users):
            return DeltaPage(chunk, (), f"next:{nxt}", None)
        return DeltaPage(chunk, (), None, f"delta:{self.version}")
