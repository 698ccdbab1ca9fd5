"""The msgraph client and how each call goes out: construction, pacing, the throttling hold, retries.

The client takes an azure-identity credential and a base URL (graph.microsoft.com, or the local simulator:
the code cannot tell them apart).

Who retries what (one owner per kind of retry):

* **Throttling and unavailability of calls safe to repeat** (429/503/504 on GET, PATCH, DELETE,
  assignLicense, revokeSignInSessions, add-member): `GraphClient._call`, with tenacity, up to
  GRAPH_MAX_RETRIES times, waiting what Retry-After says (else a backoff). The SDK's RetryHandler is off for
  every request, so nothing else retries these.
* **Non-idempotent calls** (sendMail, restore, creating a subscription): `_call_not_idempotent` retries ONLY a
  429 (Graph did not process a throttled request), waiting what Retry-After says. A timeout or a 5xx is
  surfaced, never replayed blindly: the caller's idempotency record decides.
* **Per-item 429s inside a `$batch`**: the batch executor (batch.py) re-submits only the throttled items,
  after the longest Retry-After among them, up to GRAPH_BATCH_MAX_ROUNDS rounds.
* **Semantic retries** (a user just created is not yet readable, a licence right after setting usageLocation):
  the services, with tenacity, because only they know the meaning.

Every 429 holds every caller of the client for its Retry-After (`throttle`): Graph's throttling is per app and
tenant. Every failure surfaces as the port's `GraphError` (errors.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpx
from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from shared.adapters.graph.errors import to_graph_error
from shared.adapters.graph.pacing import Pacer, pacer
from shared.ports.graph import GraphError, retry_after

__all__ = ["GRAPH_SCOPE", "TRANSIENT", "Credential", "GraphClient", "GraphConfig", "page_request"]

log = logging.getLogger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

T = TypeVar("T")
Credential = TokenCredential | AsyncTokenCredential


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


def page_request(query: Any, advanced: bool) -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    if advanced:
        config.headers.add("ConsistencyLevel", "eventual")
    return config


TRANSIENT = (429, 503, 504)
"""Answers worth repeating a safe call for: throttled, or the service briefly unavailable."""


class GraphClient:
    """The msgraph client, and how every call goes out: paced, held while throttled, retried, translated.

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
        """Requests that read signInActivity: at most Graph's quota a minute (pacing.py)."""
        self._reports = pacer(self.config.reports_per_10_seconds, 10.0 / scale)
        self._policies = pacer(1, 1.0 / scale)
        """Identity Protection and Conditional Access APIs: 1 request a second per tenant, no Retry-After
        (GRAPH-FACTS, throttling): paced, not provoked."""
        self._throttled_until = 0.0
        """time.monotonic() before which no request is sent: Graph's throttling is per app and tenant, so one
        429's Retry-After holds every concurrent caller of this gateway, not only the one that got it."""

    async def __aenter__(self) -> Self:
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
            wait = retry_after(response.headers)
            if wait is not None:
                self.throttle(wait)

    async def _once(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (APIError, httpx.HTTPError) as exc:
            raise to_graph_error(exc, operation) from None

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
