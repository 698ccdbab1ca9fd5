"""The Graph gateway: the one place that talks to Microsoft Graph (msgraph-sdk, async).

It takes an azure-identity credential and a base URL (graph.microsoft.com, or the local simulator: the code
cannot tell them apart) and speaks in domain terms (shared.domain.directory): no SDK model leaves this module.

Who retries what (one owner per kind of retry):

* **Throttling and unavailability of idempotent calls** (429/503/504 on GET, PATCH, DELETE, assignLicense,
  revokeSignInSessions, add-member): the SDK's RetryHandler middleware, configured with GRAPH_MAX_RETRIES and
  honouring Retry-After. Nothing else retries these.
* **Non-idempotent calls** (sendMail, restore): the RetryHandler is switched off for the request, and tenacity
  retries ONLY a 429 (Graph did not process a throttled request), waiting what Retry-After says. A timeout
  or a 5xx is surfaced, never replayed blindly: the caller's idempotency record decides.
* **Per-item 429s inside a `$batch`**: the batch executor re-submits only the throttled items, after the
  longest Retry-After among them, up to GRAPH_BATCH_MAX_ROUNDS rounds.
* **Semantic retries** (a user just created is not yet readable, a licence right after setting usageLocation):
  the services, with tenacity, because only they know the meaning.

Every Graph failure surfaces as `GraphError(status, code, message)`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx
from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.assigned_license import AssignedLicense
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.subscription import Subscription as SdkSubscription
from msgraph.generated.models.user import User as SdkUser
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from shared.adapters.graph_pacing import Pacer, pacer
from shared.domain.directory import (
    AppliedPolicy,
    CreatedRange,
    DeltaPage,
    DirectoryContact,
    DirectoryUser,
    GraphSubscription,
    GuestSpan,
    OutgoingMail,
    SignIn,
    SignInActivity,
    SubscribedSku,
    TenantInformation,
)
from shared.ports.graph import BATCH_LIMIT, BatchRequest, BatchResult, GraphError
from shared.ports.graph import BatchOps as PortBatchOps
from shared.ports.graph import header as _header
from shared.ports.graph import retry_after as _retry_after

__all__ = [
    "BATCH_LIMIT",
    "USER_FIELDS",
    "BatchOps",
    "BatchRequest",
    "BatchResult",
    "GraphConfig",
    "GraphError",
    "GraphGateway",
    "sign_in_from_json",
    "subscription_from_sdk",
    "user_from_json",
    "user_from_sdk",
]

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GUESTS_FILTER = "userType eq 'Guest'"
"""Served without advanced query parameters (user.md: userType supports eq)."""

USER_FIELDS: tuple[str, ...] = (
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "otherMails",
    "userType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "creationType",
    "createdDateTime",
    "accountEnabled",
    "usageLocation",
    "assignedLicenses",
)
"""What guestwarden reads of a user. signInActivity is added only where needed: it needs Entra ID P1 and
AuditLog.Read.All, and it caps the page size."""
ID_AND_DATE_FIELDS: tuple[str, ...] = ("id", "userType", "createdDateTime")
"""What a chain that only looks for guests without a createdDateTime reads (Graph's largest pages)."""

T = TypeVar("T")
Credential = TokenCredential | AsyncTokenCredential


def _to_graph_error(exc: BaseException, operation: str) -> GraphError:
    if isinstance(exc, GraphError):
        return exc
    if isinstance(exc, ODataError):
        main = exc.error
        return GraphError(
            exc.response_status_code,
            main.code if main else None,
            (main.message if main else None) or "no error message",
            operation=operation,
            retry_after=_retry_after(exc.response_headers),
            location=_header(exc.response_headers, "location"),
        )
    if isinstance(exc, APIError):
        return GraphError(
            exc.response_status_code,
            None,
            exc.message or type(exc).__name__,
            operation=operation,
            retry_after=_retry_after(exc.response_headers),
            location=_header(exc.response_headers, "location"),
        )
    if isinstance(exc, httpx.TimeoutException):
        return GraphError(None, "timeout", f"no answer in time ({type(exc).__name__})", operation=operation)
    if isinstance(exc, httpx.HTTPError):
        return GraphError(None, "transport", f"{type(exc).__name__}: {exc}", operation=operation)
    raise exc


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _enum(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def user_from_sdk(user: SdkUser) -> DirectoryUser:
    activity = user.sign_in_activity
    return DirectoryUser(
        id=str(user.id),
        display_name=user.display_name,
        user_principal_name=user.user_principal_name,
        mail=user.mail,
        other_mails=tuple(user.other_mails or ()),
        user_type=user.user_type,
        external_user_state=user.external_user_state,
        external_user_state_changed=_dt(user.external_user_state_change_date_time),
        creation_type=user.creation_type,
        created=_dt(user.created_date_time),
        account_enabled=user.account_enabled,
        usage_location=user.usage_location,
        assigned_sku_ids=frozenset(str(lic.sku_id) for lic in (user.assigned_licenses or ()) if lic.sku_id),
        sign_in_activity=None
        if activity is None
        else SignInActivity(
            last_sign_in=_dt(activity.last_sign_in_date_time),
            last_non_interactive_sign_in=_dt(activity.last_non_interactive_sign_in_date_time),
            last_successful_sign_in=_dt(activity.last_successful_sign_in_date_time),
        ),
    )


def _dt_json(value: Any) -> datetime | None:
    """A Graph timestamp from raw JSON ("...Z", up to 7 fractional digits, which fromisoformat refuses)."""
    if not isinstance(value, str) or not value:
        return None
    head, dot, rest = value.partition(".")
    if dot:  # fromisoformat takes at most 6 fractional digits; keep the zone ("Z", "+00:00") after them
        zone = rest.lstrip("0123456789")
        value = f"{head}.{rest[: len(rest) - len(zone)][:6].ljust(6, '0')}{zone}"
    return _dt(value)


def user_from_json(user: dict[str, Any]) -> DirectoryUser:
    """user_from_sdk for a raw JSON user: list pages skip the SDK's models, whose parsing costs ~10 ms a user
    (measured: 100,000 guests would spend minutes of CPU in it)."""
    activity = user.get("signInActivity")
    return DirectoryUser(
        id=str(user.get("id")),
        display_name=user.get("displayName"),
        user_principal_name=user.get("userPrincipalName"),
        mail=user.get("mail"),
        other_mails=tuple(user.get("otherMails") or ()),
        user_type=user.get("userType"),
        external_user_state=user.get("externalUserState"),
        external_user_state_changed=_dt_json(user.get("externalUserStateChangeDateTime")),
        creation_type=user.get("creationType"),
        created=_dt_json(user.get("createdDateTime")),
        account_enabled=user.get("accountEnabled"),
        usage_location=user.get("usageLocation"),
        assigned_sku_ids=frozenset(
            str(lic["skuId"]).lower()  # as str(UUID) gives them from the SDK
            for lic in (user.get("assignedLicenses") or ())
            if isinstance(lic, dict) and lic.get("skuId")
        ),
        sign_in_activity=None
        if not isinstance(activity, dict)
        else SignInActivity(
            last_sign_in=_dt_json(activity.get("lastSignInDateTime")),
            last_non_interactive_sign_in=_dt_json(activity.get("lastNonInteractiveSignInDateTime")),
            last_successful_sign_in=_dt_json(activity.get("lastSuccessfulSignInDateTime")),
        ),
    )


def sign_in_from_json(item: dict[str, Any]) -> SignIn:
    """A raw JSON signIn as the domain's SignIn: pages of sign-ins skip the SDK's models, whose parsing costs
    milliseconds an entry (measured: 20,000 sign-ins, a busy hour, took 90 s of CPU; bench/poller.py)."""
    status = item.get("status") or {}
    policies = item.get("appliedConditionalAccessPolicies") or ()
    return SignIn(
        id=str(item.get("id")),
        created=_dt_json(item.get("createdDateTime")) or datetime.min.replace(tzinfo=UTC),
        user_id=item.get("userId"),
        user_principal_name=item.get("userPrincipalName"),
        app_display_name=item.get("appDisplayName"),
        error_code=int(status.get("errorCode") or 0),
        failure_reason=status.get("failureReason"),
        additional_details=status.get("additionalDetails"),
        home_tenant_id=item.get("homeTenantId"),
        resource_tenant_id=item.get("resourceTenantId"),
        risk_state=item.get("riskState"),
        risk_level_during_sign_in=item.get("riskLevelDuringSignIn"),
        risk_event_types=tuple(item.get("riskEventTypes_v2") or ()),
        conditional_access_status=item.get("conditionalAccessStatus"),
        applied_policies=tuple(
            AppliedPolicy(p.get("displayName"), p.get("result")) for p in policies if isinstance(p, dict)
        ),
        correlation_id=item.get("correlationId"),
    )


def subscription_from_sdk(sub: SdkSubscription) -> GraphSubscription:
    return GraphSubscription(
        id=str(sub.id),
        resource=sub.resource or "",
        change_type=sub.change_type or "",
        notification_url=sub.notification_url,
        lifecycle_notification_url=sub.lifecycle_notification_url,
        expiration=_dt(sub.expiration_date_time) or datetime.min.replace(tzinfo=UTC),
    )


def _odata_filter_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created_filter(created: CreatedRange) -> str:
    """A createdDateTime range as `$filter` clauses. user.md documents ge and le (not gt, lt, `eq null`) for
    createdDateTime: the range's exclusive `high` is asked with `le`, the caller drops what it does not own."""
    clauses = []
    if created.low is not None:
        clauses.append(f"createdDateTime ge {_odata_filter_datetime(created.low)}")
    if created.high is not None:
        clauses.append(f"createdDateTime le {_odata_filter_datetime(created.high)}")
    return " and ".join(clauses)


# --------------------------------------------------------------------------------------------------------
# $batch
# --------------------------------------------------------------------------------------------------------


class BatchOps(PortBatchOps):
    """The port's batchable actions, and the reads only the gateway batches."""

    @staticmethod
    def list_sponsors(user_id: str) -> BatchRequest:
        return BatchRequest(
            f"sponsors:{user_id}",
            "GET",
            f"/users/{user_id}/sponsors?$select=id,displayName,mail,userPrincipalName",
        )

    @staticmethod
    def list_group_members(group_id: str, top: int = 999) -> BatchRequest:
        return BatchRequest(
            f"members:{group_id}",
            "GET",
            f"/groups/{group_id}/members?$select=id,displayName,mail,userPrincipalName&$top={top}",
        )

    @staticmethod
    def list_member_ids(group_id: str) -> BatchRequest:
        return BatchRequest(f"members:{group_id}", "GET", f"/groups/{group_id}/members?$select=id&$top=999")

    @staticmethod
    def get_user(user_id: str, select: Sequence[str] = USER_FIELDS) -> BatchRequest:
        return BatchRequest(f"get:{user_id}", "GET", f"/users/{user_id}?$select={','.join(select)}")


SIGN_IN_ACTIVITY_MAX_PAGE = 500
"""user-list.md: at most 500 users a page when signInActivity is selected (it was 120 until 2023)."""
SIGN_IN_ACTIVITY_OLD_PAGE = 120
_PAGE_LIMIT = re.compile(r"more than (\d+) users", re.IGNORECASE)


def _refused_page_size(exc: GraphError, asked: int) -> int | None:
    """The smaller page to ask for when Graph refused `asked` users a page, or None if that was not the refusal."""
    if exc.status != 400:
        return None
    found = _PAGE_LIMIT.search(exc.message or "")
    if found:
        limit = int(found.group(1))
        return limit if 0 < limit < asked else None
    mentions_size = any(word in (exc.message or "").lower() for word in ("page size", "$top", "top value"))
    return SIGN_IN_ACTIVITY_OLD_PAGE if mentions_size and asked > SIGN_IN_ACTIVITY_OLD_PAGE else None


def _batch_relative(link: str) -> str:
    """An absolute nextLink as a batch-relative URL (batch items take /path?query)."""
    marker = link.find("/groups/")
    return link[marker:] if marker >= 0 else link


def _is_group(item: dict[str, Any]) -> bool:
    return str(item.get("@odata.type", "")).lower().endswith(".group")


def _contact(item: dict[str, Any]) -> DirectoryContact:
    return DirectoryContact(
        id=str(item.get("id")),
        display_name=item.get("displayName"),
        mail=item.get("mail"),
        user_principal_name=item.get("userPrincipalName"),
    )


SPONSOR_GROUP_MEMBERS = 25
"""The most members of one sponsor group that are told about a guest."""


# --------------------------------------------------------------------------------------------------------
# the gateway
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphConfig:
    base_url: str = "https://graph.microsoft.com/v1.0"
    scope: str = GRAPH_SCOPE
    max_retries: int = 5
    page_size: int = 999
    timeout_seconds: float = 30.0
    batch_max_rounds: int = 6
    sign_in_activity_per_minute: int = 10
    """Graph's signInActivity quota (throttling-limits.md); 0 = no pacing."""
    reports_per_10_seconds: int = 5
    """Graph's reports quota, sign-in logs (throttling-limits.md); 0 = no pacing."""
    mailbox_concurrency: int = 4
    """Outlook: sendMail requests in flight per mailbox."""
    quota_time_scale: float = 1.0
    """Quota windows divided by this (benchmarks and tests against a simulator whose quotas run faster alike)."""


def _page_request(query: Any, advanced: bool) -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    if advanced:
        config.headers.add("ConsistencyLevel", "eventual")
    return config


TRANSIENT = (429, 503, 504)
"""Answers worth repeating a safe call for: throttled, or the service briefly unavailable."""


class GraphGateway:
    """Async Graph operations in domain terms. Build it inside the event loop that uses it.

    The msgraph client is created lazily in the running loop and rebuilt if the loop changes (a client
    cannot outlive its loop: "Event loop is closed"). Use `async with` or call `aclose()`.
    """

    def __init__(self, credential: Credential, config: GraphConfig | None = None) -> None:
        self._credential = credential
        self.config = config or GraphConfig()
        self._client: GraphServiceClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        scale = self.config.quota_time_scale
        self._activity = pacer(self.config.sign_in_activity_per_minute, 60.0 / scale)
        """Requests that read signInActivity: at most Graph's quota a minute (graph_pacing.py)."""
        self._reports = pacer(self.config.reports_per_10_seconds, 10.0 / scale)
        self._mailboxes: dict[tuple[int, str], asyncio.Semaphore] = {}
        self._sign_in_page = SIGN_IN_ACTIVITY_MAX_PAGE
        """The page size asked for with signInActivity: lowered for good if Graph refuses a larger one."""
        self._throttled_until = 0.0
        """time.monotonic() before which no request is sent: Graph's throttling is per app and tenant, so one
        429's Retry-After holds every concurrent caller of this gateway, not only the one that got it."""

    async def __aenter__(self) -> GraphGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None
        self._client = None
        self._loop = None

    # --- plumbing --------------------------------------------------------------------------------------
    @property
    def client(self) -> GraphServiceClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._build_client()
            self._loop = loop
        return self._client

    def _build_client(self) -> GraphServiceClient:
        cfg = self.config
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[cfg.scope])
        # The SDK's RetryHandler is off for every request: it would retry a 429 inside the transport, where no
        # httpx hook sees it, so the hold that stops every caller (`throttle`) would miss it. The gateway owns
        # every retry instead (`_retrying`), and each 429 passes `_notice` on its way.
        retry = RetryHandlerOption(delay=0, max_retries=0, should_retry=False)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.timeout_seconds),
            follow_redirects=False,
            event_hooks={"request": [self._hold], "response": [self._notice]},
        )
        http = GraphClientFactory.create_with_default_middleware(
            client=http, options={RetryHandlerOption.get_key(): retry}
        )
        adapter = GraphRequestAdapter(auth, client=http)
        # Set explicitly: httpx would append a slash to a base URL and the SDK would then ask /v1.0//users.
        adapter.base_url = cfg.base_url.rstrip("/")
        self._http = http
        return GraphServiceClient(request_adapter=adapter)

    def throttle(self, seconds: float) -> None:
        """Hold every request of this gateway for `seconds` (a 429's Retry-After)."""
        self._throttled_until = max(self._throttled_until, time.monotonic() + seconds)

    async def _hold(self, request: httpx.Request) -> None:
        """Right before any request goes out: wait while a 429's Retry-After runs (see `throttle`), again if
        another 429 extended the hold meanwhile."""
        while (held := self._throttled_until - time.monotonic()) > 0:
            until = self._throttled_until
            await self._sleep(held)
            if self._throttled_until == until:
                return

    async def _notice(self, response: httpx.Response) -> None:
        """As soon as a 429 arrives (before anyone parses it): hold everyone for its Retry-After."""
        if response.status_code == 429:
            wait = _retry_after(response.headers)
            if wait is not None:
                self.throttle(wait)

    async def _once(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (APIError, httpx.HTTPError) as exc:
            raise _to_graph_error(exc, operation) from None

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]], pace: Pacer | None = None) -> T:
        """A call that is safe to repeat: retried on 429 (holding every caller for Retry-After), 503 and 504;
        `pace` spaces every attempt to a quota."""
        return await self._retrying(operation, call, lambda e: e.status in TRANSIENT, pace)

    async def _call_not_idempotent(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry only on 429 (Graph did not process it), waiting Retry-After; never on a 5xx or a timeout."""
        return await self._retrying(operation, call, lambda e: e.throttled)

    async def _retrying(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        retry_on: Callable[[GraphError], bool],
        pace: Pacer | None = None,
    ) -> T:
        """`call` retried by tenacity while `retry_on` says so, waiting Retry-After (else backoff). A 429 also
        holds every other caller of this gateway for that long (`throttle`): throttling is per app and tenant."""

        def _wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hinted = exc.retry_after if isinstance(exc, GraphError) else None
            delay = hinted if hinted is not None else min(2.0**state.attempt_number, 30.0)
            if isinstance(exc, GraphError) and exc.throttled:
                self.throttle(delay)
            log.info("%s: %s, retrying in %.1f s", operation, getattr(exc, "status", exc), delay)
            return delay

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, GraphError) and retry_on(e)),
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=_wait,
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if pace is not None:
                    await pace.acquire()
                return await self._once(operation, call)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    # --- users -----------------------------------------------------------------------------------------
    async def get_user(self, user_id: str, select: Sequence[str] = USER_FIELDS) -> DirectoryUser | None:
        """The user with the selected fields, or None if Graph does not know the id (or not yet)."""
        builder = self.client.users.by_user_id(user_id)
        query = builder.UserItemRequestBuilderGetQueryParameters(select=list(select))
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        try:
            pace = self._activity if "signInActivity" in select else None
            user = await self._call(f"get user {user_id}", self._raw_get(info), pace)  # raw JSON: user_from_json
        except GraphError as exc:
            if exc.not_found:
                return None
            raise
        return user_from_json(user) if user.get("id") else None

    async def iter_guest_pages(
        self,
        *,
        with_sign_in_activity: bool = True,
        created: CreatedRange | None = None,
        ids_and_dates_only: bool = False,
        select: Sequence[str] = USER_FIELDS,
    ) -> AsyncIterator[list[DirectoryUser]]:
        """Guests page by page (constant memory): `userType eq 'Guest'` [and createdDateTime in `created`'s
        bounds, both inclusive: see created_filter]. `ids_and_dates_only` selects ID_AND_DATE_FIELDS instead of
        `select`.

        signInActivity cannot be filtered together with anything else, so activity is judged in code.
        Page size: GRAPH_PAGE_SIZE is asked for (at most 500 with signInActivity, see _iter_user_pages); the pages
        are read as Graph cuts them.
        """
        chosen = ID_AND_DATE_FIELDS if ids_and_dates_only else select
        fields = [*chosen, "signInActivity"] if with_sign_in_activity else list(chosen)
        extra_filter = created_filter(created) if created is not None else ""
        odata_filter = GUESTS_FILTER + (f" and {extra_filter}" if extra_filter else "")
        async for page in self._iter_user_pages(odata_filter, fields):
            yield page

    async def _iter_user_pages(self, odata_filter: str, fields: list[str]) -> AsyncIterator[list[DirectoryUser]]:
        """Pages as the server cuts them. With signInActivity, `$top` asks at most the documented maximum
        (SIGN_IN_ACTIVITY_MAX_PAGE); a first page refused for its size ("more than N users") is asked again with
        the size the refusal names (else 120, the older documented size), and the gateway keeps that size."""
        users = self.client.users
        with_activity = "signInActivity" in fields
        pace = self._activity if with_activity else None
        while True:
            top = min(self.config.page_size, self._sign_in_page) if with_activity else self.config.page_size
            query = users.UsersRequestBuilderGetQueryParameters(filter=odata_filter, select=fields, top=top)
            info = users.to_get_request_information(_page_request(query, False))
            try:
                body = await self._get_page("list users", self._raw_get(info), pace)
                break
            except GraphError as exc:
                smaller = _refused_page_size(exc, top) if with_activity else None
                if smaller is None:
                    raise
                log.warning(
                    "Graph refused pages of %d users with signInActivity (%s): asking for %d", top, exc, smaller
                )
                self._sign_in_page = smaller
        while True:
            yield [user_from_json(u) for u in body.get("value", ()) if isinstance(u, dict)]
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return
            info = users.with_url(str(next_link)).to_get_request_information(_page_request(None, False))
            body = await self._get_page("list users", self._raw_get(info), pace)

    def _raw_get(self, info: RequestInformation) -> Callable[[], Awaitable[dict[str, Any]]]:
        """A GET answered as plain JSON (no SDK models: see user_from_json)."""
        adapter = self.client.request_adapter

        async def send() -> dict[str, Any]:
            raw: bytes | None = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            body = json.loads(raw or b"{}")
            return body if isinstance(body, dict) else {}

        return send

    async def _get_page(self, operation: str, call: Callable[[], Awaitable[T]], pace: Pacer | None = None) -> T:
        """A page of a list: a call safe to repeat (`_call`); concurrent partition scans all stop when any of
        them is throttled, since every 429 holds the whole gateway."""
        return await self._call(operation, call, pace)

    async def guest_span(self) -> GuestSpan:
        """How many guests have a createdDateTime, and the earliest one: one advanced query (`$orderby` on
        createdDateTime, and with a `$filter`, needs ConsistencyLevel: eventual and `$count=true`:
        aad-advanced-queries.md). The partitioned stale scan cuts the span into createdDateTime ranges."""
        users = self.client.users
        query = users.UsersRequestBuilderGetQueryParameters(
            filter=f"{GUESTS_FILTER} and createdDateTime ge 1970-01-01T00:00:00Z",
            orderby=["createdDateTime"],
            select=["id", "createdDateTime"],
            top=1,
            count=True,
        )
        info = users.to_get_request_information(_page_request(query, True))
        body = await self._get_page("guest span", self._raw_get(info))
        first = next(iter(body.get("value") or ()), None)
        earliest = _dt_json(first.get("createdDateTime")) if isinstance(first, dict) else None
        return GuestSpan(dated=int(body.get("@odata.count") or 0), earliest=earliest)

    async def count_guests(self) -> int:
        """All guests, dated or not: `GET /users/$count?$filter=userType eq 'Guest'` (an advanced query)."""
        count = self.client.users.count
        config = _page_request(count.CountRequestBuilderGetQueryParameters(filter=GUESTS_FILTER), True)
        guests = await self._get_page("count guests", lambda: count.get(config))
        return int(guests or 0)

    async def get_users(self, user_ids: Sequence[str], *, with_sign_in_activity: bool) -> list[DirectoryUser]:
        """Users by id in `$batch`es (missing ones left out): `GET /users/{id}?$select=...`."""
        select = [*USER_FIELDS, "signInActivity"] if with_sign_in_activity else list(USER_FIELDS)
        pace = self._activity if with_sign_in_activity else None
        size = min(BATCH_LIMIT, pace.limit) if pace is not None else BATCH_LIMIT
        results: list[BatchResult] = []
        for start in range(0, len(user_ids), size):  # each read of signInActivity counts against its quota
            chunk = user_ids[start : start + size]
            if pace is not None:
                await pace.acquire(len(chunk))
            results += await self.batch([BatchOps.get_user(uid, select) for uid in chunk])
        users: list[DirectoryUser] = []
        for result in results:
            if result.ok and isinstance(result.body, dict):
                users.append(user_from_json(result.body))
            elif result.status != 404 and (error := result.error) is not None:
                raise error
        return users

    async def group_member_ids(self, group_id: str) -> set[str]:
        """A group's direct members' ids, following paging, through `$batch` GETs."""
        members: set[str] = set()
        request: BatchRequest | None = BatchOps.list_member_ids(group_id)
        while request is not None:
            (result,) = await self.batch([request])
            if not result.ok:
                error = result.error
                assert error is not None
                raise error
            body = result.body or {}
            members.update(str(m["id"]) for m in body.get("value", ()) if m.get("id"))
            next_link = body.get("@odata.nextLink")
            request = replace(request, url=_batch_relative(str(next_link))) if next_link else None
        return members

    async def set_usage_location(self, user_id: str, country: str) -> None:
        await self._call(
            f"set usageLocation of {user_id}",
            lambda: self.client.users.by_user_id(user_id).patch(SdkUser(usage_location=country)),
        )

    async def set_account_enabled(self, user_id: str, enabled: bool) -> None:
        await self._call(
            f"{'enable' if enabled else 'disable'} {user_id}",
            lambda: self.client.users.by_user_id(user_id).patch(SdkUser(account_enabled=enabled)),
        )

    async def revoke_sessions(self, user_id: str) -> None:
        await self._call(
            f"revoke sessions of {user_id}",
            lambda: self.client.users.by_user_id(user_id).revoke_sign_in_sessions.post(),
        )

    async def soft_delete_user(self, user_id: str) -> None:
        """DELETE /users/{id}: a soft delete, restorable for 30 days."""
        await self._call(f"delete {user_id}", lambda: self.client.users.by_user_id(user_id).delete())

    async def restore_user(self, user_id: str) -> DirectoryUser:
        item = self.client.directory.deleted_items.by_directory_object_id(user_id).restore
        restored = await self._call_not_idempotent(f"restore {user_id}", lambda: item.post())
        if isinstance(restored, SdkUser):
            return user_from_sdk(restored)
        return DirectoryUser(id=str(restored.id) if restored and restored.id else user_id)

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]:
        """The people who sponsor each user, through `$batch` (20 a request).

        A sponsor can be a user or a group (user-list-sponsors.md). A group stands for its members: they are read
        (`GET /groups/{id}/members`, GroupMember.Read.All, which the sweep holds for its exclusion groups) and
        each becomes a sponsor `via_group` that group; with only User.Read.All Graph would tell nothing but the
        group's id (limited-info.md), so the group's own properties are never relied on. At most
        SPONSOR_GROUP_MEMBERS members a group are taken (a whole department named as sponsor is a mistake to
        surface, not a mailing list to blast)."""
        results = await self.batch([BatchOps.list_sponsors(uid) for uid in user_ids])
        listed: dict[str, list[dict[str, Any]]] = {}
        for uid, result in zip(user_ids, results, strict=True):
            if not result.ok:
                error = result.error
                assert error is not None
                raise error
            listed[uid] = [i for i in (result.body or {}).get("value", ()) if isinstance(i, dict)]
        groups = sorted({str(i.get("id")) for items in listed.values() for i in items if _is_group(i)})
        members = await self._sponsor_group_members(groups) if groups else {}
        sponsors: dict[str, list[DirectoryContact]] = {}
        for uid, items in listed.items():
            seen: dict[str, DirectoryContact] = {}
            for item in items:
                found = members.get(str(item.get("id")), []) if _is_group(item) else [_contact(item)]
                for contact in found:
                    seen.setdefault(contact.id, contact)
            sponsors[uid] = list(seen.values())
        return sponsors

    async def _sponsor_group_members(self, group_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]:
        results = await self.batch([BatchOps.list_group_members(gid, SPONSOR_GROUP_MEMBERS) for gid in group_ids])
        members: dict[str, list[DirectoryContact]] = {}
        for gid, result in zip(group_ids, results, strict=True):
            if not result.ok:
                error = result.error
                assert error is not None
                raise error
            body = result.body or {}
            if body.get("@odata.nextLink"):
                log.warning(
                    "sponsor group %s has more than %d members: only those are told", gid, SPONSOR_GROUP_MEMBERS
                )
            people = [i for i in body.get("value", ()) if isinstance(i, dict) and not _is_group(i)]
            members[gid] = [replace(_contact(i), via_group=gid) for i in people[:SPONSOR_GROUP_MEMBERS]]
        return members

    async def list_sponsors(self, user_id: str) -> list[DirectoryContact]:
        response = await self._call(
            f"list sponsors of {user_id}", lambda: self.client.users.by_user_id(user_id).sponsors.get()
        )
        contacts = []
        for obj in (response.value if response else None) or ():
            extra = obj.additional_data or {}
            contacts.append(
                DirectoryContact(
                    id=str(obj.id),
                    display_name=getattr(obj, "display_name", None) or extra.get("displayName"),
                    mail=getattr(obj, "mail", None) or extra.get("mail"),
                    user_principal_name=getattr(obj, "user_principal_name", None) or extra.get("userPrincipalName"),
                )
            )
        return contacts

    # --- licences and groups ------------------------------------------------------------------------
    async def list_subscribed_skus(self) -> list[SubscribedSku]:
        response = await self._call("list subscribedSkus", lambda: self.client.subscribed_skus.get())
        skus = []
        for sku in (response.value if response else None) or ():
            prepaid = sku.prepaid_units
            skus.append(
                SubscribedSku(
                    sku_id=str(sku.sku_id),
                    sku_part_number=sku.sku_part_number or "",
                    enabled_units=int(prepaid.enabled or 0) if prepaid else 0,
                    consumed_units=int(sku.consumed_units or 0),
                    capability_status=sku.capability_status or "",
                    applies_to=sku.applies_to,
                )
            )
        return skus

    async def assign_license(self, user_id: str, sku_id: str, disabled_plans: Sequence[str] = ()) -> None:
        """Assign one SKU. Idempotent at Graph: assigning a SKU the user has does not take a second seat."""
        body = AssignLicensePostRequestBody(
            add_licenses=[AssignedLicense(sku_id=UUID(sku_id), disabled_plans=[UUID(p) for p in disabled_plans])],
            remove_licenses=[],
        )
        await self._call(
            f"assign licence {sku_id} to {user_id}",
            lambda: self.client.users.by_user_id(user_id).assign_license.post(body),
        )

    async def add_group_member(self, group_id: str, user_id: str) -> bool:
        """Add a user to a group. False if it was a member already (Graph's 400 for a duplicate reference)."""
        ref = ReferenceCreate(odata_id=f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}")
        try:
            await self._call(
                f"add {user_id} to group {group_id}",
                lambda: self.client.groups.by_group_id(group_id).members.ref.post(ref),
            )
        except GraphError as exc:
            if exc.status == 400 and "already exist" in exc.message:
                return False
            raise
        return True

    # --- tenants ---------------------------------------------------------------------------------------
    async def find_tenant_information(self, tenant_id: str) -> TenantInformation | None:
        """A home tenant's public name and default domain (CrossTenantInformation.ReadBasic.All), or None
        when Graph does not know the id. Never a contact: those come from our partner directory."""
        builder = self.client.tenant_relationships.find_tenant_information_by_tenant_id_with_tenant_id(tenant_id)
        try:
            info = await self._call(f"find tenant {tenant_id}", builder.get)
        except GraphError as exc:
            if exc.not_found:
                return None
            raise
        if info is None:
            return None
        return TenantInformation(
            tenant_id=str(info.tenant_id or tenant_id),
            display_name=info.display_name,
            default_domain_name=info.default_domain_name,
            federation_brand_name=info.federation_brand_name,
        )

    # --- mail ------------------------------------------------------------------------------------------
    async def send_mail(self, mail: OutgoingMail) -> None:
        """POST /users/{sender}/sendMail. Not idempotent: only a 429 is retried; dedup with a record."""
        message = Message(
            subject=mail.subject,
            body=ItemBody(content_type=BodyType.Html if mail.body_type == "HTML" else BodyType.Text, content=mail.body),
            to_recipients=[Recipient(email_address=EmailAddress(address=address)) for address in mail.to],
        )
        body = SendMailPostRequestBody(message=message, save_to_sent_items=False)
        send = self.client.users.by_user_id(mail.sender).send_mail
        async with self._mailbox(mail.sender):  # Outlook: 4 requests in flight per mailbox
            await self._call_not_idempotent(
                f"send mail as {mail.sender}",
                lambda: send.post(body),
            )

    def _mailbox(self, sender: str) -> asyncio.Semaphore:
        key = (id(asyncio.get_running_loop()), sender.lower())
        if key not in self._mailboxes:
            self._mailboxes[key] = asyncio.Semaphore(self.config.mailbox_concurrency)
        return self._mailboxes[key]

    # --- sign-ins and delta ---------------------------------------------------------------------------
    async def iter_sign_in_pages(
        self, since: datetime, until: datetime, *, extra_filter: str | None = None
    ) -> AsyncIterator[list[SignIn]]:
        """Sign-ins with since <= createdDateTime <= until, page by page, newest first (Graph's order)."""
        start, end = _odata_filter_datetime(since), _odata_filter_datetime(until)
        odata_filter = f"createdDateTime ge {start} and createdDateTime le {end}"
        if extra_filter:
            odata_filter += f" and {extra_filter}"
        sign_ins = self.client.audit_logs.sign_ins
        query = sign_ins.SignInsRequestBuilderGetQueryParameters(filter=odata_filter, top=1000)
        info = sign_ins.to_get_request_information(RequestConfiguration(query_parameters=query))
        while True:
            # the reports quota (5 per 10 s) is paced, not provoked: every page is a request against it
            body = await self._call("list sign-ins", self._raw_get(info), self._reports)
            yield [sign_in_from_json(s) for s in body.get("value", ()) if isinstance(s, dict)]
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return
            info = sign_ins.with_url(str(next_link)).to_get_request_information()

    async def users_delta(
        self, link: str | None = None, *, select: Sequence[str] = USER_FIELDS, start_from_now: bool = False
    ) -> DeltaPage:
        """One page of users/delta. Pass the previous nextLink/deltaLink, or nothing to start.

        start_from_now asks `$deltatoken=latest`: no initial sync, only changes from now on.
        An expired or reset link raises GraphError (400 syncStateNotFound, 410 Gone, ...: the caller decides to
        resync); a Location to restart from is kept on it only when it points at this gateway's Graph, so a
        token is never sent elsewhere.
        """
        delta = self.client.users.delta
        if link:
            try:
                response = await self._call("users delta", lambda: delta.with_url(link).get())
            except GraphError as exc:
                if exc.location and not exc.location.startswith(self.config.base_url.rstrip("/") + "/"):
                    log.warning("users/delta: ignoring a Location outside %s", self.config.base_url)
                    exc.location = None
                raise
        elif start_from_now:
            # $select must ride along: later rounds (following the deltaLink) return only what it selected
            fields = ",".join(select)
            latest = f"{self.config.base_url.rstrip('/')}/users/delta?$select={fields}&$deltatoken=latest"
            response = await self._call("users delta (latest)", lambda: delta.with_url(latest).get())
        else:
            query = delta.DeltaRequestBuilderGetQueryParameters(select=list(select))
            response = await self._call("users delta", lambda: delta.get(RequestConfiguration(query_parameters=query)))
        changed: list[DirectoryUser] = []
        removed: list[str] = []
        for user in (response.value if response else None) or ():
            if "@removed" in (user.additional_data or {}):
                removed.append(str(user.id))
            else:
                changed.append(user_from_sdk(user))
        return DeltaPage(
            changed=tuple(changed),
            removed_ids=tuple(removed),
            next_link=response.odata_next_link if response else None,
            delta_link=response.odata_delta_link if response else None,
        )

    # --- change-notification subscriptions -------------------------------------------------------------
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
        """POST /subscriptions. Graph runs the validation handshake against notification_url before answering.

        Not replayed after an unknown outcome (a second subscription could be created): only a 429 is retried.
        """
        body = SdkSubscription(
            resource=resource,
            change_type=change_type,
            notification_url=notification_url,
            lifecycle_notification_url=lifecycle_notification_url,
            client_state=client_state,
            expiration_date_time=expiration,
        )
        created = await self._call_not_idempotent(
            f"create subscription on {resource}",
            lambda: self.client.subscriptions.post(body),
        )
        if created is None:
            raise GraphError(None, "emptyResponse", "Graph returned no subscription", operation="create subscription")
        return subscription_from_sdk(created)

    async def get_subscription(self, subscription_id: str) -> GraphSubscription | None:
        try:
            sub = await self._call(
                f"get subscription {subscription_id}",
                lambda: self.client.subscriptions.by_subscription_id(subscription_id).get(),
            )
        except GraphError as exc:
            if exc.not_found:
                return None
            raise
        return subscription_from_sdk(sub) if sub is not None else None

    async def list_subscriptions(self) -> list[GraphSubscription]:
        response = await self._call("list subscriptions", lambda: self.client.subscriptions.get())
        return [subscription_from_sdk(s) for s in ((response.value if response else None) or ())]

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> GraphSubscription:
        patch = SdkSubscription(expiration_date_time=expiration)
        renewed = await self._call(
            f"renew subscription {subscription_id}",
            lambda: self.client.subscriptions.by_subscription_id(subscription_id).patch(patch),
        )
        if renewed is None:
            raise GraphError(None, "emptyResponse", "Graph returned no subscription", operation="renew subscription")
        return subscription_from_sdk(renewed)

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        await self._call(
            f"reauthorize subscription {subscription_id}",
            lambda: self.client.subscriptions.by_subscription_id(subscription_id).reauthorize.post(),
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        try:
            await self._call(
                f"delete subscription {subscription_id}",
                lambda: self.client.subscriptions.by_subscription_id(subscription_id).delete(),
            )
        except GraphError as exc:
            if not exc.not_found:
                raise

    # --- $batch ----------------------------------------------------------------------------------------
    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]:
        """Run requests in JSON batches of 20; per-item results in the order given.

        Items Graph throttled (inner 429) are re-submitted after the longest Retry-After among them, up to
        GRAPH_BATCH_MAX_ROUNDS rounds; what is still throttled then comes back with status 429.
        """
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResult] = {}
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = list(requests[start : start + BATCH_LIMIT])
            for result in await self._run_batch_chunk(chunk):
                results[result.id] = result
        return [results[i] for i in ids]

    async def _run_batch_chunk(self, chunk: list[BatchRequest]) -> list[BatchResult]:
        pending = chunk
        done: list[BatchResult] = []
        for round_number in range(1, self.config.batch_max_rounds + 1):
            answers = await self._post_batch(pending)
            throttled = [a for a in answers if a.status == 429]
            done.extend(a for a in answers if a.status != 429)
            if not throttled:
                return done
            if round_number == self.config.batch_max_rounds:
                done.extend(throttled)
                log.warning("%d batch item(s) still throttled after %d rounds", len(throttled), round_number)
                return done
            waits = [_retry_after(a.headers) for a in throttled]
            delay = max((w for w in waits if w is not None), default=min(2.0**round_number, 30.0))
            log.info("%d batch item(s) throttled; retrying them in %.1f s", len(throttled), delay)
            self.throttle(delay)
            by_id = {r.id: r for r in pending}
            pending = [by_id[a.id] for a in throttled]
            await self._sleep(delay)
        return done  # pragma: no cover - the loop always returns

    async def _post_batch(self, chunk: list[BatchRequest]) -> list[BatchResult]:
        adapter = self.client.request_adapter
        info = RequestInformation(method=Method.POST, url_template="{+baseurl}/$batch")
        info.path_parameters = {"baseurl": adapter.base_url}
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps({"requests": [r.to_json() for r in chunk]}).encode()

        async def send() -> bytes | None:
            raw: bytes | None = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            return raw

        caller = self._call if all(r.idempotent for r in chunk) else self._call_not_idempotent
        raw = await caller(f"$batch of {len(chunk)}", send)
        payload = json.loads(raw or b"{}")
        answers = []
        for item in payload.get("responses", ()):
            body = item.get("body")
            answers.append(
                BatchResult(
                    id=str(item.get("id")),
                    status=int(item.get("status", 0)),
                    body=body if isinstance(body, dict) else None,
                    headers={str(k): str(v) for k, v in (item.get("headers") or {}).items()},
                )
            )
        missing = {r.id for r in chunk} - {a.id for a in answers}
        for request_id in sorted(missing):
            answers.append(
                BatchResult(request_id, 0, {"error": {"code": "missingResponse", "message": "not in batch reply"}})
            )
        return answers
