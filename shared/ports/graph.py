"""The Graph port: what each flow needs of Microsoft Graph, in domain terms, and how Graph failures look.

No SDK here (stdlib and shared.domain only): services import these, the msgraph-sdk gateway
(shared/adapters/graph/) implements them, tests pass fakes. Each flow names the narrow set of operations it
uses (`LicensingGraph`, `StaleGraph`, ...); GraphGateway has them all.

Every Graph failure surfaces as `GraphError(status, code, message)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from shared.domain.directory import (
    CreatedRange,
    DeltaPage,
    DirectoryContact,
    DirectoryUser,
    GraphSubscription,
    GuestSpan,
    SignIn,
    SubscribedSku,
    TenantInformation,
)
from shared.domain.posture import AuthorizationSettings, CaPolicy, RoleHolder
from shared.domain.reinvite import InvitationRequest, SentInvitation
from shared.ports.mailer import Mailer

__all__ = [
    "BATCH_LIMIT",
    "BatchOps",
    "BatchRequest",
    "BatchResult",
    "ConversionGraph",
    "DeltaGraph",
    "DetectionGraph",
    "DigestGraph",
    "GraphError",
    "InventoryGraph",
    "LicensingGraph",
    "MemberPage",
    "ResponseGraph",
    "ScanGraph",
    "StaleGraph",
    "SubscriptionGraph",
    "header",
    "retry_after",
]

BATCH_LIMIT = 20
"""Graph's maximum number of requests in one JSON batch."""


class GraphError(Exception):
    """A Graph call failed: HTTP status, Graph's error code and message (never a token or a body we sent)."""

    def __init__(
        self,
        status: int | None,
        code: str | None,
        message: str,
        *,
        operation: str = "",
        retry_after: float | None = None,
        location: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        self.retry_after = retry_after
        self.location = location
        """The Location header of the answer, if any (a delta sync reset names where to restart)."""
        where = f"{operation}: " if operation else ""
        super().__init__(f"{where}Graph answered {status} {code or ''}: {message}".replace("  ", " "))

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def throttled(self) -> bool:
        return self.status == 429


def header(headers: Mapping[Any, Any] | None, name: str) -> str | None:
    """One header's value, by lower-case name, from a mapping of headers (values may be lists)."""
    for key, value in dict(headers or {}).items():
        if str(key).lower() == name:
            return str(next(iter(value)) if isinstance(value, list | set | tuple) and value else value)
    return None


def retry_after(headers: Mapping[Any, Any] | None) -> float | None:
    """A Retry-After header in seconds (never negative), or None when absent or not a number."""
    value = header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------------
# $batch
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request of a JSON batch, with a relative URL such as ``/users/{id}``."""

    id: str
    method: Literal["GET", "POST", "PATCH", "DELETE"]
    url: str
    body: dict[str, Any] | None = None
    idempotent: bool = True
    """False for calls that must not be replayed after an unknown outcome (e.g. restore, sendMail)."""

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        if self.body is not None:
            item["body"] = self.body
            item["headers"] = {"Content-Type": "application/json"}
        return item


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one batch item. `status` 429 here means still throttled after every round."""

    id: str
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> GraphError | None:
        if self.ok:
            return None
        inner = (self.body or {}).get("error") or {}
        return GraphError(
            self.status,
            inner.get("code"),
            inner.get("message") or "no error message",
            operation=f"batch item {self.id}",
            retry_after=retry_after(self.headers),
        )


class BatchOps:
    """Typed builders for the batchable actions the flows take (ids double as batch item ids)."""

    @staticmethod
    def disable(user_id: str) -> BatchRequest:
        return BatchRequest(f"disable:{user_id}", "PATCH", f"/users/{user_id}", {"accountEnabled": False})

    @staticmethod
    def enable(user_id: str) -> BatchRequest:
        return BatchRequest(f"enable:{user_id}", "PATCH", f"/users/{user_id}", {"accountEnabled": True})

    @staticmethod
    def revoke_sessions(user_id: str) -> BatchRequest:
        return BatchRequest(f"revoke:{user_id}", "POST", f"/users/{user_id}/revokeSignInSessions", {})

    @staticmethod
    def soft_delete(user_id: str) -> BatchRequest:
        return BatchRequest(f"delete:{user_id}", "DELETE", f"/users/{user_id}")

    @staticmethod
    def remove_licenses(user_id: str, sku_ids: Sequence[str]) -> BatchRequest:
        """Take directly assigned SKUs back (`POST /users/{id}/assignLicense` with only removeLicenses)."""
        body = {"addLicenses": [], "removeLicenses": list(sku_ids)}
        return BatchRequest(f"unlicense:{user_id}", "POST", f"/users/{user_id}/assignLicense", body)

    @staticmethod
    def remove_member(group_id: str, user_id: str) -> BatchRequest:
        """Leave a group (`DELETE /groups/{id}/members/{memberId}/$ref`)."""
        return BatchRequest(f"leave:{group_id}:{user_id}", "DELETE", f"/groups/{group_id}/members/{user_id}/$ref")

    @staticmethod
    def restore(user_id: str) -> BatchRequest:
        return BatchRequest(
            f"restore:{user_id}", "POST", f"/directory/deletedItems/{user_id}/restore", {}, idempotent=False
        )


# --------------------------------------------------------------------------------------------------------
# what each flow needs of Graph
# --------------------------------------------------------------------------------------------------------


class LicensingGraph(Mailer, Protocol):
    async def get_user(self, user_id: str, *, with_identities: bool = False) -> DirectoryUser | None:
        """`with_identities`: also read `identities` (returned only on $select; the welcome mail needs them)."""
        ...

    async def list_subscribed_skus(self) -> list[SubscribedSku]: ...

    async def set_usage_location(self, user_id: str, country: str) -> None: ...

    async def assign_license(self, user_id: str, sku_id: str, disabled_plans: Sequence[str] = ()) -> None: ...

    async def add_group_member(self, group_id: str, user_id: str) -> bool: ...


class DeltaGraph(Protocol):
    async def users_delta(self, link: str | None = None, *, start_from_now: bool = False) -> DeltaPage: ...


class DetectionGraph(Protocol):
    def iter_sign_in_pages(self, since: datetime, until: datetime) -> AsyncIterator[list[SignIn]]: ...

    async def get_user(self, user_id: str) -> DirectoryUser | None: ...


class ResponseGraph(Mailer, Protocol):
    async def get_user(self, user_id: str) -> DirectoryUser | None: ...

    async def find_tenant_information(self, tenant_id: str) -> TenantInformation | None: ...


class DigestGraph(Mailer, Protocol):
    """The digest only mails the admins."""


class SubscriptionGraph(Protocol):
    async def create_subscription(
        self,
        *,
        resource: str,
        change_type: str,
        notification_url: str,
        lifecycle_notification_url: str | None,
        client_state: str,
        expiration: datetime,
    ) -> GraphSubscription: ...

    async def get_subscription(self, subscription_id: str) -> GraphSubscription | None: ...

    async def list_subscriptions(self) -> list[GraphSubscription]: ...

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> GraphSubscription: ...

    async def reauthorize_subscription(self, subscription_id: str) -> None: ...

    async def delete_subscription(self, subscription_id: str) -> None: ...


class InventoryGraph(Protocol):
    """The part of the Graph gateway the inventory needs."""

    def iter_guest_pages(self, *, with_sign_in_activity: bool = ...) -> AsyncIterator[list[DirectoryUser]]: ...

    async def list_subscribed_skus(self) -> list[SubscribedSku]: ...

    async def sponsors_of(self, user_ids: list[str]) -> dict[str, list[DirectoryContact]]: ...


@dataclass(frozen=True, slots=True)
class GuestPage:
    """One page of guests, and where the next one starts."""

    users: list[DirectoryUser]
    next: str | None
    """Opaque (Graph's `@odata.nextLink`); None on the last page. A run cut off continues from it."""


@dataclass(frozen=True, slots=True)
class MemberPage:
    """One page of a group's transitive members."""

    user_ids: tuple[str, ...]
    """The users on the page (nested groups, devices and contacts are members too, but never guests)."""
    members: int
    """Every member the page held, whatever its type: what counts against the exclusion cap."""


class ScanGraph(Protocol):
    """The stale sweep's reads of the guests (shared/services/stale/scan.py)."""

    def guest_pages(
        self,
        *,
        with_sign_in_activity: bool = True,
        created: CreatedRange | None = None,
        resume: str | None = None,
    ) -> AsyncIterator[GuestPage]:
        """`iter_guest_pages`, each page with where the next starts; `resume` (a page's `next`) continues a
        chain read earlier, possibly by another process. A `resume` Graph no longer honours (an expired skip
        token) raises GraphError 400/410: the caller reads the range again from its start."""
        ...

    def iter_guest_pages(
        self,
        *,
        with_sign_in_activity: bool = True,
        created: CreatedRange | None = None,
        ids_and_dates_only: bool = False,
    ) -> AsyncIterator[list[DirectoryUser]]:
        """Every guest, page by page as Graph cuts them; only those `created` in a range when given one (the
        adapter asks Graph for the range's bounds, inclusive: the caller keeps what the range owns);
        `ids_and_dates_only` reads just id, userType and createdDateTime (Graph's largest pages)."""
        ...

    async def guest_span(self) -> GuestSpan: ...

    async def count_guests(self) -> int: ...

    async def get_users(self, user_ids: Sequence[str], *, with_sign_in_activity: bool) -> list[DirectoryUser]: ...


class ReturnGraph(Mailer, Protocol):
    """Giving reclaimed licences back (shared/services/stale/reclaim.py): seats, the SKU, the group."""

    async def list_subscribed_skus(self) -> list[SubscribedSku]: ...

    async def assign_license(self, user_id: str, sku_id: str, disabled_plans: Sequence[str] = ()) -> None: ...

    async def add_group_member(self, group_id: str, user_id: str) -> bool: ...


class StaleGraph(ScanGraph, ReturnGraph, Protocol):
    """What the sweep needs of Graph (GraphGateway has it; tests pass a fake): the scan's reads, and these."""

    def transitive_member_pages(self, group_id: str) -> AsyncIterator[MemberPage]:
        """A group's members, those of its nested groups included (each once), page by page as Graph cuts them.
        The caller stops when it has read enough (STALE_EXCLUDE_GROUP_MAX_MEMBERS): a page not asked for is
        never fetched."""
        ...

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]: ...

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]: ...

    async def resend_invitation(self, request: InvitationRequest) -> SentInvitation:
        """`POST /invitations` with `sendInvitationMessage: true` for a guest that has not redeemed (User.Invite.All).
        Not idempotent (Graph mails the guest): only a 429 is retried, a timeout or a 5xx surfaces."""
        ...


class AttestGraph(ReturnGraph, Protocol):
    """What a sponsor's answer needs of Graph (shared.services.attestation): the guest, its sponsors (is the
    answer's sponsor still one?), and the `$batch` that disables, revokes or enables it."""

    async def get_user(self, user_id: str) -> DirectoryUser | None: ...

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]: ...

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]: ...


class ConversionGraph(Mailer, Protocol):
    """What reviewing a user change needs of Graph (shared.services.conversion): the user with its identities,
    the SKU a guest licence was, the `$batch` that takes it back, and the admins' mail."""

    async def get_user(self, user_id: str, *, with_identities: bool = False) -> DirectoryUser | None: ...

    async def list_subscribed_skus(self) -> list[SubscribedSku]: ...

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]: ...


class PostureGraph(Protocol):
    """The posture checks' reads (shared.services.posture): read-only, each refused read becomes `unknown`."""

    async def get_authorization_policy(self) -> AuthorizationSettings: ...

    async def list_conditional_access_policies(self) -> list[CaPolicy]: ...

    async def list_role_holders(self, role_definition_id: str) -> list[RoleHolder]: ...

    async def list_subscribed_skus(self) -> list[SubscribedSku]: ...

    def iter_sign_in_pages(
        self, since: datetime, until: datetime, *, extra_filter: str | None = None
    ) -> AsyncIterator[list[SignIn]]: ...

    def iter_guest_pages(self, *, with_sign_in_activity: bool = ...) -> AsyncIterator[list[DirectoryUser]]: ...

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]: ...
