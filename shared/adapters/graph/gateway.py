"""The Graph gateway: Graph's operations in domain terms (shared.domain.directory), no SDK model leaves it.

It implements every flow's Graph port (shared/ports/graph.py). How calls go out (client, pacing, retries) is
client.py, `$batch` is batch.py, the translation of Graph's answers is mapping.py, failures are errors.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.assigned_license import AssignedLicense
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.invitation import Invitation
from msgraph.generated.models.invited_user_message_info import InvitedUserMessageInfo
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.message import Message
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.subscription import Subscription as SdkSubscription
from msgraph.generated.models.user import User as SdkUser
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)
from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

from shared.adapters.graph.batch import BatchOps, GraphBatchClient
from shared.adapters.graph.client import Credential, GraphConfig, page_request
from shared.adapters.graph.mapping import (
    GUESTS_FILTER,
    ID_AND_DATE_FIELDS,
    USER_FIELDS,
    authorization_from_json,
    ca_policy_from_json,
    contact_from_graph,
    created_filter,
    is_group,
    odata_datetime,
    role_holder_from_json,
    sign_in_from_json,
    sku_from_graph,
    subscription_from_graph,
    tenant_from_graph,
    timestamp,
    user_from_graph,
)
from shared.domain.directory import (
    CreatedRange,
    DeltaPage,
    DirectoryContact,
    DirectoryUser,
    GraphSubscription,
    GuestSpan,
    OutgoingMail,
    SignIn,
    SubscribedSku,
    TenantInformation,
)
from shared.domain.posture import AuthorizationSettings, CaPolicy, RoleHolder
from shared.domain.reinvite import InvitationRequest, SentInvitation
from shared.ports.graph import BATCH_LIMIT, BatchRequest, BatchResult, GraphError, GuestPage, MemberPage

__all__ = ["SPONSOR_GROUP_MEMBERS", "GraphGateway"]

log = logging.getLogger(__name__)


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


def _maybe_user(item: dict[str, Any]) -> bool:
    kind = str(item.get("@odata.type") or "").lower()
    return not kind or kind.endswith(".user")


SPONSOR_GROUP_MEMBERS = 25
"""The most members of one sponsor group that are told about a guest."""


class GraphGateway(GraphBatchClient):
    """Async Graph operations in domain terms. Build it inside the event loop that uses it (see GraphClient)."""

    def __init__(self, credential: Credential, config: GraphConfig | None = None) -> None:
        super().__init__(credential, config)
        self._mailboxes: dict[tuple[int, str], asyncio.Semaphore] = {}
        self._sign_in_page = SIGN_IN_ACTIVITY_MAX_PAGE
        """The page size asked for with signInActivity: lowered for good if Graph refuses a larger one."""

    # --- users -----------------------------------------------------------------------------------------
    async def get_user(
        self, user_id: str, select: Sequence[str] = USER_FIELDS, *, with_identities: bool = False
    ) -> DirectoryUser | None:
        """The user with the selected fields, or None if Graph does not know the id (or not yet). `with_identities`
        adds `identities` (user.md: returned only on $select), which only the welcome mail reads."""
        if with_identities and "identities" not in select:
            select = [*select, "identities"]
        builder = self.client.users.by_user_id(user_id)
        query = builder.UserItemRequestBuilderGetQueryParameters(select=list(select))
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        try:
            pace = self._activity if "signInActivity" in select else None
            user = await self._call(f"get user {user_id}", self._raw_get(info), pace)  # raw JSON (mapping.py)
        except GraphError as exc:
            if exc.not_found:
                return None
            raise
        return user_from_graph(user) if user.get("id") else None

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
            yield page.users

    async def guest_pages(
        self, *, with_sign_in_activity: bool = True, created: CreatedRange | None = None, resume: str | None = None
    ) -> AsyncIterator[GuestPage]:
        """`iter_guest_pages` with each page's `@odata.nextLink`, continuing from `resume` when given. A stored
        link is followed only if it points at GRAPH_BASE_URL's users collection: the state it was kept in must
        not be able to send our token elsewhere."""
        fields = [*USER_FIELDS, "signInActivity"] if with_sign_in_activity else list(USER_FIELDS)
        extra_filter = created_filter(created) if created is not None else ""
        odata_filter = GUESTS_FILTER + (f" and {extra_filter}" if extra_filter else "")
        if resume is not None and not resume.startswith(f"{self.config.base_url.rstrip('/')}/users?"):
            raise ValueError(f"refusing to continue a scan from a link outside {self.config.base_url}/users")
        async for page in self._iter_user_pages(odata_filter, fields, resume):
            yield page

    async def _iter_user_pages(
        self, odata_filter: str, fields: list[str], resume: str | None = None
    ) -> AsyncIterator[GuestPage]:
        """Pages as the server cuts them. With signInActivity, `$top` asks at most the documented maximum
        (SIGN_IN_ACTIVITY_MAX_PAGE); a first page refused for its size ("more than N users") is asked again with
        the size the refusal names (else 120, the older documented size), and the gateway keeps that size."""
        users = self.client.users
        with_activity = "signInActivity" in fields
        pace = self._activity if with_activity else None
        while resume is None:
            top = min(self.config.page_size, self._sign_in_page) if with_activity else self.config.page_size
            query = users.UsersRequestBuilderGetQueryParameters(filter=odata_filter, select=fields, top=top)
            info = users.to_get_request_information(page_request(query, False))
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
        if resume is not None:
            info = users.with_url(resume).to_get_request_information(page_request(None, False))
            body = await self._get_page("list users", self._raw_get(info), pace)
        while True:
            next_link = body.get("@odata.nextLink")
            users_page = [user_from_graph(u) for u in body.get("value", ()) if isinstance(u, dict)]
            yield GuestPage(users_page, str(next_link) if next_link else None)
            if not next_link:
                return
            info = users.with_url(str(next_link)).to_get_request_information(page_request(None, False))
            body = await self._get_page("list users", self._raw_get(info), pace)

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
        info = users.to_get_request_information(page_request(query, True))
        body = await self._get_page("guest span", self._raw_get(info))
        first = next(iter(body.get("value") or ()), None)
        earliest = timestamp(first.get("createdDateTime")) if isinstance(first, dict) else None
        return GuestSpan(dated=int(body.get("@odata.count") or 0), earliest=earliest)

    async def count_guests(self) -> int:
        """All guests, dated or not: `GET /users/$count?$filter=userType eq 'Guest'` (an advanced query)."""
        count = self.client.users.count
        config = page_request(count.CountRequestBuilderGetQueryParameters(filter=GUESTS_FILTER), True)
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
                users.append(user_from_graph(result.body))
            elif result.status != 404 and (error := result.error) is not None:
                raise error
        return users

    async def transitive_member_pages(self, group_id: str) -> AsyncIterator[MemberPage]:
        """A group's transitive members page by page (`GET /groups/{id}/transitiveMembers?$select=id`, through
        `$batch` GETs, following nextLink); the next page is asked for only when the caller wants it.

        Users are told by their @odata.type, which Graph gives each object of a directoryObject collection; an
        object without one is kept as a user (an id that is no guest excludes nobody, a guest left out would be
        acted on). Graph lists a member reached through several nested groups once."""
        request: BatchRequest | None = BatchOps.list_transitive_member_ids(group_id)
        while request is not None:
            (result,) = await self.batch([request])
            if not result.ok:
                error = result.error
                assert error is not None
                raise error
            body = result.body or {}
            members = [m for m in body.get("value", ()) if isinstance(m, dict)]
            users = tuple(str(m["id"]) for m in members if m.get("id") and _maybe_user(m))
            next_link = body.get("@odata.nextLink")
            request = replace(request, url=_batch_relative(str(next_link))) if next_link else None
            yield MemberPage(users, len(members))

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
            return user_from_graph(restored)
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
        groups = sorted({str(i.get("id")) for items in listed.values() for i in items if is_group(i)})
        members = await self._sponsor_group_members(groups) if groups else {}
        sponsors: dict[str, list[DirectoryContact]] = {}
        for uid, items in listed.items():
            seen: dict[str, DirectoryContact] = {}
            for item in items:
                found = members.get(str(item.get("id")), []) if is_group(item) else [contact_from_graph(item)]
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
            people = [i for i in body.get("value", ()) if isinstance(i, dict) and not is_group(i)]
            members[gid] = [replace(contact_from_graph(i), via_group=gid) for i in people[:SPONSOR_GROUP_MEMBERS]]
        return members

    async def list_sponsors(self, user_id: str) -> list[DirectoryContact]:
        response = await self._call(
            f"list sponsors of {user_id}", lambda: self.client.users.by_user_id(user_id).sponsors.get()
        )
        return [contact_from_graph(obj) for obj in ((response.value if response else None) or ())]

    # --- posture (read-only) ---------------------------------------------------------------------------
    async def get_authorization_policy(self) -> AuthorizationSettings:
        """`GET /policies/authorizationPolicy` (authorizationpolicy-get.md; Policy.Read.All)."""
        builder = self.client.policies.authorization_policy
        info = builder.to_get_request_information()
        return authorization_from_json(await self._call("get authorizationPolicy", self._raw_get(info)))

    async def list_conditional_access_policies(self) -> list[CaPolicy]:
        """`GET /identity/conditionalAccess/policies`, every page (conditionalaccessroot-list-policies.md;
        Policy.Read.All), paced to the Conditional Access API's 1 request a second."""
        builder = self.client.identity.conditional_access.policies
        info = builder.to_get_request_information()
        policies: list[CaPolicy] = []
        while True:
            body = await self._call("list conditional access policies", self._raw_get(info), self._policies)
            policies += [ca_policy_from_json(p) for p in body.get("value", ()) if isinstance(p, dict)]
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return policies
            info = builder.with_url(str(next_link)).to_get_request_information()

    async def list_role_holders(self, role_definition_id: str) -> list[RoleHolder]:
        """Who holds a directory role: `GET /roleManagement/directory/roleAssignments?$filter=roleDefinitionId eq
        '<id>'&$expand=principal` (rbacapplication-list-roleassignments.md; RoleManagement.Read.Directory).
        Active assignments only: PIM-eligible ones are not listed here."""
        UUID(role_definition_id)  # an id, never text, goes into the filter
        builder = self.client.role_management.directory.role_assignments
        query = builder.RoleAssignmentsRequestBuilderGetQueryParameters(
            filter=f"roleDefinitionId eq '{role_definition_id}'", expand=["principal"]
        )
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        holders: list[RoleHolder] = []
        while True:
            body = await self._call("list role assignments", self._raw_get(info))
            holders += [role_holder_from_json(a) for a in body.get("value", ()) if isinstance(a, dict)]
            next_link = body.get("@odata.nextLink")
            if not next_link:
                return holders
            info = builder.with_url(str(next_link)).to_get_request_information()

    # --- licences and groups ------------------------------------------------------------------------
    async def list_subscribed_skus(self) -> list[SubscribedSku]:
        response = await self._call("list subscribedSkus", lambda: self.client.subscribed_skus.get())
        return [sku_from_graph(sku) for sku in ((response.value if response else None) or ())]

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
        return tenant_from_graph(info, tenant_id)

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

    # --- invitations -----------------------------------------------------------------------------------
    async def resend_invitation(self, request: InvitationRequest) -> SentInvitation:
        """POST /invitations for a guest that exists and has not redeemed: Graph mails it the invitation again
        (invitation-post.md; User.Invite.All). Not idempotent (a mail goes out): only a 429 is retried. The
        answer's inviteRedeemUrl (a redemption ticket) is dropped here, never logged."""
        body = Invitation(
            invited_user_email_address=request.email,
            invite_redirect_url=request.redirect_url,
            send_invitation_message=True,
            invited_user_message_info=InvitedUserMessageInfo(customized_message_body=request.message),
        )
        sent = await self._call_not_idempotent(
            f"re-invite {request.user_id}", lambda: self.client.invitations.post(body)
        )
        invited = sent.invited_user if sent is not None else None
        return SentInvitation(
            invited_user_id=str(invited.id) if invited is not None and invited.id else None,
            status=sent.status if sent is not None else None,
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
        start, end = odata_datetime(since), odata_datetime(until)
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
                changed.append(user_from_graph(user))
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
        return subscription_from_graph(created)

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
        return subscription_from_graph(sub) if sub is not None else None

    async def list_subscriptions(self) -> list[GraphSubscription]:
        response = await self._call("list subscriptions", lambda: self.client.subscriptions.get())
        return [subscription_from_graph(s) for s in ((response.value if response else None) or ())]

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> GraphSubscription:
        patch = SdkSubscription(expiration_date_time=expiration)
        renewed = await self._call(
            f"renew subscription {subscription_id}",
            lambda: self.client.subscriptions.by_subscription_id(subscription_id).patch(patch),
        )
        if renewed is None:
            raise GraphError(None, "emptyResponse", "Graph returned no subscription", operation="renew subscription")
        return subscription_from_graph(renewed)

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
