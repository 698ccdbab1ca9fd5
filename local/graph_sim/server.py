"""GraphSimulator: the tenant, the clock and the fault switchboard behind an aiohttp server on 127.0.0.1.

The server runs on its own event loop in a background thread so that synchronous tests, the CLI and async
code (which builds its own msgraph clients in its own loop) can all talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from local.graph_sim.clock import SimClock, iso_z
from local.graph_sim.context import SimContext
from local.graph_sim.contract_identities import federated_identity, guest_identities, host_identity
from local.graph_sim.contract_permissions import requirement
from local.graph_sim.contract_queries import (
    INVITATION_RESEND_DATES,
    PAGE_TOKEN_LIFETIMES,
    SIGN_IN_ACTIVITY_PAGING,
    TRANSITIVE_MEMBERS_PAGING,
)
from local.graph_sim.contract_throttling import NO_RETRY_AFTER
from local.graph_sim.errors import GraphError, error_body
from local.graph_sim.faults import FaultDecision, FaultInjector
from local.graph_sim.identity import (
    GRAPH_APP_ID,
    InvalidToken,
    granted_graph_roles,
    mint_token,
    role_assignments,
    token_response,
    verify_token,
)
from local.graph_sim.messages import JSON_CONTENT_TYPE, SimRequest, SimResponse
from local.graph_sim.notifications import SIM_APPLICATION_ID, SIM_CREATOR_ID, NotificationHub
from local.graph_sim.resources import build_router
from local.graph_sim.resources.delta import DELTA_EXPIRY_VARIANTS
from local.graph_sim.router import RouteMatch, Router
from local.graph_sim.throttle import Throttled, Throttling

log = logging.getLogger(__name__)
API_PREFIX = "/v1.0"
TOKEN_PATH = re.compile(r"/[^/]+/oauth2/v2\.0/token")


class GraphSimulator:
    """Graph on 127.0.0.1 for one tenant fixture, rebased onto the moment it starts.

    `now` pins the start (default: the wall clock, so the simulator agrees with an app reading it); the clock
    then ticks with real time unless `frozen`. The fixture's `tenant.now` becomes the start and every date in it
    moves by the same amount (local/graph_sim/clock.py, rebase_tenant), whatever the calendar date.
    """

    def __init__(self, tenant: dict[str, Any], *, now: datetime | None = None, frozen: bool = False) -> None:
        start = (now or datetime.now(UTC)).astimezone(UTC)
        self.clock = SimClock(start, frozen=frozen)
        from local.graph_sim.store import TenantStore  # local import keeps module import order simple

        self.store = TenantStore(tenant, self.clock)
        self.faults = FaultInjector()
        self.throttling = Throttling(len(self.store.users))
        """Graph's quotas (local/graph_sim/contract_throttling.py), on by default: `sim.throttling.configure(...)`."""
        self.requests: collections.Counter[str] = collections.Counter()
        self.denied: collections.Counter[str] = collections.Counter()
        """403s for missing permissions, by contract row ("GET /groups/{id}/members")."""
        self.outbox: list[dict[str, Any]] = []
        self.router: Router = build_router()
        self.notifications = NotificationHub(self.clock, str(self.store.tenant.get("id", "")))
        self.store.listeners.append(self.notifications.user_changed)
        self.context = SimContext(
            self.store, self.clock, self.outbox, dispatch=self.dispatch, notifications=self.notifications
        )
        self.invitations: list[dict[str, Any]] = self.context.invitations
        """POST /invitations as recorded, re-sent invitations included (local/graph_sim/resources/invitations.py)."""
        self._count_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @classmethod
    def from_fixture(cls, path: str | Path, *, now: datetime | None = None, frozen: bool = False) -> GraphSimulator:
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle), now=now, frozen=frozen)

    # lifecycle -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def start(self, port: int = 0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        ready = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self.notifications.attach(loop)
            try:
                loop.run_until_complete(self._serve(port))
            except BaseException as exc:
                failures.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.notifications.aclose())
                if self._runner is not None:
                    loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="graph-sim", daemon=True)
        self._thread.start()
        ready.wait(timeout=15)
        if failures:
            self._thread = None
            raise RuntimeError(f"graph simulator failed to start: {failures[0]}") from failures[0]
        return self

    async def _serve(self, port: int) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # test and demo helpers -------------------------------------------------------------------------
    def user(self, key: str) -> dict[str, Any]:
        """The raw stored user (live or soft-deleted) by id, userPrincipalName or fixture name."""
        with self.store.lock:
            key = self.store.named.get(key, key)
            found = self.store.find_user(key) or self.store.deleted.get(key)
            if found is None:
                raise KeyError(key)
            return found

    def users(self) -> list[dict[str, Any]]:
        """Copies of every live user, as stored."""
        with self.store.lock:
            return [dict(user) for user in self.store.users.values()]

    def update_user(self, key: str, **props: Any) -> dict[str, Any]:
        """Change a user as the directory would (e.g. externalUserState='Accepted'); bumps delta."""
        with self.store.lock:
            user = self.user(key)
            return self.store.update_user(user["id"], props)

    def redeem_invitation(self, key: str, via: str | None = None) -> dict[str, Any]:
        """The guest accepts its invitation: externalUserState Accepted now, and `identities` names the identity
        provider it redeemed with (`via`: an issuer such as "google.com"; default: by its mail domain, see
        local/graph_sim/contract_identities.py); fires `updated`."""
        stamp = iso_z(self.clock.now())
        with self.store.lock:
            user = self.user(key)
            upn = str(user.get("userPrincipalName") or "")
            identities = guest_identities(
                upn=upn,
                host_domain=upn.rpartition("#EXT#@")[2] or self.store.tenant.get("defaultDomain", ""),
                mail=user.get("mail"),
                redeemed=True,
                issuer=via,
                partners=(p.get("defaultDomainName", "") for p in self.store.partner_tenants),
            )
            return self.update_user(
                key, externalUserState="Accepted", externalUserStateChangeDateTime=stamp, identities=identities
            )

    def convert_to_member(self, key: str, *, internal_upn: str | None = None) -> dict[str, Any]:
        """A guest becomes a Member; fires `updated`. By default as an admin's `PATCH userType=Member` leaves it:
        still external, its identities unchanged (entra-docs identity/users/convert-external-users-internal.md:
        userType "only defines the level of permissions"). With `internal_upn`, as convertExternalToInternalMemberUser
        leaves a cloud user (api-reference/beta/api/user-convertexternaltointernalmemberuser.md: a new UPN of this
        tenant; the 2023 conversion page: "updates the userType from guest to member"): which identities remain is
        not documented, so only the host's entry for the new UPN is kept (it now signs in here), and
        externalUserState is left as it was."""
        with self.store.lock:
            if internal_upn is None:
                return self.update_user(key, userType="Member")
            domain = internal_upn.rpartition("@")[2]
            return self.update_user(
                key,
                userType="Member",
                userPrincipalName=internal_upn,
                identities=[host_identity(internal_upn, domain)],
            )

    def reset_redemption(self, key: str) -> dict[str, Any]:
        """An admin resets the guest's redemption (entra-docs external-id/reset-redemption-status.md: an invitation
        with resetRedemption=true keeps the object, and the guest redeems again, maybe with another identity):
        back to PendingAcceptance with only the host's identity until `redeem_invitation(key, via=...)`. What
        externalUserState reads between reset and redemption is not documented: PendingAcceptance here. Fires
        `updated`."""
        stamp = iso_z(self.clock.now())
        with self.store.lock:
            user = self.user(key)
            upn = str(user.get("userPrincipalName") or "")
            host = upn.rpartition("#EXT#@")[2] or self.store.tenant.get("defaultDomain", "")
            return self.update_user(
                key,
                externalUserState="PendingAcceptance",
                externalUserStateChangeDateTime=stamp,
                identities=[host_identity(upn, host)],
            )

    def change_identity(self, key: str, via: str, issuer_assigned_id: str | None = None) -> dict[str, Any]:
        """The guest's federated identity is replaced by one of issuer `via` (e.g. "google.com", "mail") without
        anything else changing: the drift guestwarden flags (a redemption by someone else). Fires `updated`."""
        with self.store.lock:
            user = self.user(key)
            kept = [i for i in user.get("identities") or [] if i.get("signInType") != "federated"]
            entry = federated_identity(via, user.get("mail"))
            if issuer_assigned_id is not None:
                entry["issuerAssignedId"] = issuer_assigned_id
            return self.update_user(key, identities=[entry, *kept])

    def invite_guest(self, mail: str, display_name: str | None = None, **props: Any) -> str:
        """Invite a B2B guest as Graph's invitation manager would (PendingAcceptance, #EXT# UPN); fires
        `updated` (creating a user is an update for Graph's /users notifications). Returns the new id."""
        local, _, domain = mail.partition("@")
        if not local or not domain:
            raise ValueError(f"not an e-mail address: {mail!r}")
        from local.graph_sim.store import pending_guest

        tenant_domain = str(self.store.tenant.get("defaultDomain", "contoso.onmicrosoft.com"))
        user = pending_guest(mail, display_name, tenant_domain, iso_z(self.clock.now()))
        user.update(props)
        with self.store.lock:
            if self.store.find_user(user["userPrincipalName"]) or self.store.find_user(user["id"]):
                raise ValueError(f"a user {user['userPrincipalName']} ({user['id']}) already exists")
            self.store.add_user(user)
            if user["assignedLicenses"]:
                self.store.recount_seats()
        return str(user["id"])

    def expire_delta_links(self, variant: str = "syncStateNotFound") -> None:
        """Every deltaLink issued so far stops being served, the way `variant` says (DELTA_EXPIRY_VARIANTS:
        400 syncStateNotFound, a 410 Gone sync reset with a Location, or another 400): the full-resync path."""
        if variant not in DELTA_EXPIRY_VARIANTS:
            raise ValueError(f"unknown delta expiry variant {variant!r}: one of {', '.join(DELTA_EXPIRY_VARIANTS)}")
        with self.store.lock:
            self.store.delta_epoch += 1
            self.store.delta_expiry_variant = variant

    @property
    def sign_in_activity_paging(self) -> str:
        """How `$top` is met when signInActivity is selected: a key of contract_queries.SIGN_IN_ACTIVITY_PAGING
        ("refuse-above-500" by default, "cap-500", "refuse-above-120", "cap-120"): the docs leave it open."""
        return self.store.sign_in_activity_paging

    @sign_in_activity_paging.setter
    def sign_in_activity_paging(self, mode: str) -> None:
        if mode not in SIGN_IN_ACTIVITY_PAGING:
            raise ValueError(f"unknown paging mode {mode!r}: one of {', '.join(SIGN_IN_ACTIVITY_PAGING)}")
        self.store.sign_in_activity_paging = mode

    @property
    def page_token_lifetime(self) -> str:
        """How long a users list's nextLink is honoured: a key of contract_queries.PAGE_TOKEN_LIFETIMES
        ("unlimited" by default, "expires-60s" answers 400 Directory_ExpiredPageToken after 60 s of the
        simulator's clock): paging.md names no lifetime."""
        return self.store.page_token_lifetime

    @page_token_lifetime.setter
    def page_token_lifetime(self, mode: str) -> None:
        if mode not in PAGE_TOKEN_LIFETIMES:
            raise ValueError(f"unknown page token lifetime {mode!r}: one of {', '.join(PAGE_TOKEN_LIFETIMES)}")
        self.store.page_token_lifetime = mode

    @property
    def invitation_resend_date(self) -> str:
        """What sending an invitation again to a pending guest does to its externalUserStateChangeDateTime: a key
        of contract_queries.INVITATION_RESEND_DATES ("kept" by default, "moved" stamps the resend): the docs say
        neither."""
        return self.store.invitation_resend_date

    @invitation_resend_date.setter
    def invitation_resend_date(self, mode: str) -> None:
        if mode not in INVITATION_RESEND_DATES:
            raise ValueError(f"unknown invitation resend mode {mode!r}: one of {', '.join(INVITATION_RESEND_DATES)}")
        self.store.invitation_resend_date = mode

    @property
    def transitive_members_paging(self) -> str:
        """How `$top` is met on a group's transitiveMembers: a key of contract_queries.TRANSITIVE_MEMBERS_PAGING
        ("refuse-above-999" by default; "cap-5" serves pages of 5 whatever `$top` asks, as paging.md allows)."""
        return self.store.transitive_members_paging

    @transitive_members_paging.setter
    def transitive_members_paging(self, mode: str) -> None:
        if mode not in TRANSITIVE_MEMBERS_PAGING:
            raise ValueError(f"unknown paging mode {mode!r}: one of {', '.join(TRANSITIVE_MEMBERS_PAGING)}")
        self.store.transitive_members_paging = mode

    # change notifications (see local/graph_sim/notifications.py) ------------------------------------
    @property
    def subscription_quota(self) -> int:
        return self.notifications.subscription_quota

    @subscription_quota.setter
    def subscription_quota(self, value: int) -> None:
        self.notifications.subscription_quota = value

    @property
    def validation_timeout_s(self) -> float:
        """How long the validation handshake waits (Graph: 10 s; lower it to test a slow endpoint)."""
        return self.notifications.validation_timeout_s

    @validation_timeout_s.setter
    def validation_timeout_s(self, value: float) -> None:
        self.notifications.validation_timeout_s = value

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """One record per notification per POST attempt (see docs/tenant-fixture.md for the keys)."""
        return self.notifications.deliveries

    def subscriptions(self) -> list[dict[str, Any]]:
        """The live subscriptions as Graph returns them (expired ones are gone)."""
        return [sub.to_graph() for sub in self.notifications.live()]

    def send_lifecycle_event(self, subscription_id: str, event: str) -> bool:
        """POST a lifecycle notification to the subscription's lifecycleNotificationUrl, in the background, as
        Graph does for /users: only "reauthorizationRequired" (the others are ValueError), and nothing for a
        subscription without a lifecycleNotificationUrl (returns False; recorded in notifications.dropped)."""
        return self.notifications.send_lifecycle_event(subscription_id, event)

    def wait_for_deliveries(
        self, n: int, timeout: float = 5.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """Block until n delivery records (matching `where`) exist; TimeoutError otherwise."""
        return self.notifications.wait_for_deliveries(n, timeout, where)

    async def wait_for_deliveries_async(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - same signature as the sync variant; the wait runs in a thread
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """wait_for_deliveries for async tests (waits in a worker thread, never blocks the caller's loop)."""
        return await asyncio.to_thread(self.notifications.wait_for_deliveries, n, timeout, where)

    def wait_for_idle(self, timeout: float = 10.0) -> None:
        """Block until no notification is queued, delayed, batched or being retried."""
        self.notifications.wait_idle(timeout)

    @property
    def entra_id_p1(self) -> bool:
        """False: the tenant has no Entra ID P1, so signInActivity answers 403 (fixture: tenant.entraIdP1)."""
        return self.store.entra_id_p1

    @entra_id_p1.setter
    def entra_id_p1(self, value: bool) -> None:
        with self.store.lock:
            self.store.entra_id_p1 = value

    @property
    def token_url(self) -> str:
        """The token endpoint (client credentials): tokens carry the app's granted Graph roles."""
        return f"http://127.0.0.1:{self.port}/{self.store.tenant.get('id', 'common')}/oauth2/v2.0/token"

    @property
    def tenant_id(self) -> str:
        return str(self.store.tenant.get("id", ""))

    def token(self, roles: Iterable[str] | None = None, client_id: str | None = None) -> str:
        """A bearer token this simulator accepts. Without `roles`: what the token endpoint issues to the app
        `client_id` (default guestwarden's identity), with the Graph roles granted in appRoleAssignments. With
        `roles`: guestwarden's identity holding exactly those roles, whatever the fixture grants (for tests)."""
        with self.store.lock:
            if roles is None:
                return str(token_response(self.store, client_id, self.clock.now())["access_token"])
            wanted = client_id or SIM_APPLICATION_ID
            principal = next((sp for sp in self.store.service_principals.values() if sp.get("appId") == wanted), None)
            return mint_token(self.tenant_id, principal, roles, self.clock.now())

    def granted_roles(self, principal_id: str) -> list[str]:
        """The Graph roles appRoleAssignments grant a principal now (what its next token will carry)."""
        with self.store.lock:
            return granted_graph_roles(self.store.service_principals, self.store.app_role_assignments, principal_id)

    def set_graph_roles(self, roles: Iterable[str], principal_id: str = SIM_CREATOR_ID) -> None:
        """Grant a principal exactly these Graph roles (its appRoleAssignments on Graph replaced): tokens issued
        from now on carry them; tokens already issued keep theirs, as Entra's do."""
        with self.store.lock:
            graph = next(sp for sp in self.store.service_principals.values() if sp.get("appId") == GRAPH_APP_ID)
            principal = self.store.service_principals[principal_id]
            kept = [
                a
                for a in self.store.app_role_assignments
                if not (a["principalId"] == principal_id and a["resourceId"] == graph["id"])
            ]
            added = role_assignments(principal, graph, sorted(set(roles)), self.clock.now(), f"sim-{principal_id}")
            self.store.app_role_assignments[:] = kept + added

    def add_signin(self, entry: dict[str, Any]) -> None:
        with self.store.lock:
            self.store.add_signin(entry)

    def named(self, name: str) -> str:
        """The id of a fixture's named case (see docs/tenant-fixture.md)."""
        return self.store.named[name]

    # dispatch --------------------------------------------------------------------------------------
    async def dispatch(self, req: SimRequest) -> SimResponse:
        match = self.router.resolve(req.method, req.path)
        if match.route is None:
            if match.path_known:
                return self._error(
                    req, 405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
                )
            segment = req.path.strip("/").split("/")[-1]
            return self._error(req, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        key = match.route.key
        with self._count_lock:
            self.requests[f"BATCH {key}" if req.in_batch else key] += 1
        needs = requirement(req.method, req.path, req.query, req.body)
        if needs is None:
            log.error("graph-sim: no permission row for %s %s (local/graph_sim/contract_permissions.py)", *key.split())
            return self._error(req, 500, "generalException", f"The simulator has no permission row for {key}.")
        if not needs.satisfied_by(req.roles or ()):
            with self._count_lock:
                self.denied[needs.route.route] += 1
            return self._error(
                req, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )
        ticket = self.throttling.admit(req.method, match.route.template, match.params, req.query)
        if isinstance(ticket, Throttled):
            return self._throttled(req, ticket)
        try:
            return await self._run(req, match, key)
        finally:
            self.throttling.release(ticket)

    async def _run(self, req: SimRequest, match: RouteMatch, key: str) -> SimResponse:
        assert match.route is not None
        decision = self.faults.decide(key, req.in_batch)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        if decision.status is not None:
            return self._fault(req, decision)
        handler = match.route.handler
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(self.context, req, match.params)
            else:
                with self.store.lock:
                    outcome = handler(self.context, req, match.params)
                result = await outcome if inspect.isawaitable(outcome) else outcome
        except GraphError as exc:
            return self._error(req, exc.status, exc.code, exc.message, exc.headers)
        except Exception:
            log.exception("graph-sim handler failed: %s %s", req.method, req.path)
            return self._error(req, 500, "generalException", "An unexpected error occurred in the simulator.")
        return self._stamp(req, result)

    def _stamp(self, req: SimRequest, response: SimResponse) -> SimResponse:
        response.headers.setdefault("request-id", str(uuid.uuid4()))
        response.headers.setdefault(
            "client-request-id", req.header("client-request-id") or response.headers["request-id"]
        )
        return response

    def _error(
        self, req: SimRequest, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> SimResponse:
        body = error_body(code, message, self.clock.now(), req.header("client-request-id"))
        return self._stamp(req, SimResponse(status, body, dict(headers or {})))

    def _throttled(self, req: SimRequest, refusal: Throttled) -> SimResponse:
        """Graph's 429 (concepts/throttling.md, "Sample response"), with the Retry-After that lets it in."""
        headers = {"Retry-After": f"{refusal.retry_after_s:g}", "x-ms-throttle-information": refusal.quota}
        if refusal.quota in NO_RETRY_AFTER:  # contract_throttling.py: these quotas' 429s name no wait
            del headers["Retry-After"]
        return self._error(req, 429, "TooManyRequests", "Please retry again later.", headers)

    def _fault(self, req: SimRequest, decision: FaultDecision) -> SimResponse:
        headers = {"Retry-After": str(decision.retry_after_s)} if decision.retry_after_s is not None else {}
        if decision.status == 429:
            return self._error(req, 429, "TooManyRequests", "Too many requests. Please try again later.", headers)
        if decision.status == 503:
            return self._error(req, 503, "serviceNotAvailable", "Service is temporarily unavailable.", headers)
        status = decision.status or 500
        return self._error(req, status, "generalException", "Injected fault.", headers)

    # HTTP front end --------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = {name.lower(): value for name, value in request.headers.items()}
        base = SimRequest(method=request.method, path="/", headers=headers, base_url=self.base_url)
        path = request.path
        if request.method == "POST" and TOKEN_PATH.fullmatch(path):
            return await self._issue_token(request)
        if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
            return self._to_web(self._error(base, 404, "BadRequest", f"Invalid version: '{path}'."))
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return self._to_web(self._error(base, 401, "InvalidAuthenticationToken", "Access token is empty."))
        try:
            claims = verify_token(self.tenant_id, auth[7:].strip())
        except InvalidToken as exc:
            return self._to_web(self._error(base, 401, "InvalidAuthenticationToken", str(exc)))
        granted = claims.get("roles")
        roles = [str(role) for role in granted] if isinstance(granted, list) else []
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._to_web(
                    self._error(
                        base,
                        400,
                        "BadRequest",
                        "Unable to read JSON request payload. Please ensure Content-Type header is set and "
                        "payload is of valid JSON format.",
                    )
                )
        sim_request = SimRequest(
            method=request.method.upper(),
            path=path[len(API_PREFIX) :] or "/",
            query={key: value for key, value in request.query.items()},
            headers=headers,
            body=body,
            base_url=self.base_url,
            roles=frozenset(roles),
        )
        return self._to_web(await self.dispatch(sim_request))

    async def _issue_token(self, request: web.Request) -> web.Response:
        """POST /{tenant}/oauth2/v2.0/token: an app-only token carrying the app's granted Graph roles."""
        form = await request.post()
        client_id = form.get("client_id")
        with self.store.lock:
            body = token_response(self.store, client_id if isinstance(client_id, str) else None, self.clock.now())
        return web.json_response(body)

    def _to_web(self, response: SimResponse) -> web.Response:
        headers = dict(response.headers)
        if response.body is None:
            return web.Response(status=response.status, headers=headers)
        if response.is_text:
            headers["Content-Type"] = "text/plain"
            return web.Response(status=response.status, text=response.body, headers=headers)
        headers["Content-Type"] = JSON_CONTENT_TYPE
        payload = json.dumps(response.body, separators=(",", ":"))
        return web.Response(status=response.status, body=payload.encode(), headers=headers)


def now_iso(sim: GraphSimulator) -> str:
    return iso_z(sim.clock.now())
