"""In-memory fakes for the stale sweep: a directory that answers `$batch` like Graph, and a report folder."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace

from shared.domain.directory import CreatedRange, DirectoryContact, DirectoryUser, OutgoingMail, SubscribedSku
from shared.domain.reinvite import InvitationRequest, SentInvitation
from shared.ports.graph import BatchRequest, BatchResult, GraphError, GuestPage, MemberPage
from shared.ports.reports import ReportStore, ReportStoreError
from shared.services.stale import PlanItem, StaleDeps, StalePlan, iter_items


def _error(status: int, code: str) -> dict[str, object]:
    return {"error": {"code": code, "message": code}}


class FakeStaleGraph:
    def __init__(self, users: Sequence[DirectoryUser] = (), page_size: int = 3) -> None:
        self.users = {u.id: u for u in users}
        self.deleted: dict[str, DirectoryUser] = {}
        self.sponsors: dict[str, list[DirectoryContact]] = {}
        self.groups: dict[str, set[str]] = {}
        self.skus: dict[str, SubscribedSku] = {}
        """group id -> member ids; a member that is itself a key here is a nested group."""
        self.member_page_size = 999
        self.member_pages_read: dict[str, int] = {}
        """group id -> transitiveMembers pages handed out (a reader that stops early leaves the rest unread)."""
        self.outbox: list[OutgoingMail] = []
        self.writes: list[str] = []
        """Every state-changing batch item that succeeded, e.g. "PATCH /users/g1 {'accountEnabled': False}"."""
        self.page_size = page_size
        self.pages_read = 0
        self.batch_calls = 0
        self.crash_on_batch: int | None = None
        """Raise (like a dead connection) on this batch call number (1-based) that writes."""
        self.list_error: GraphError | None = None
        self.item_status: dict[str, int] = {}
        self.invitations: list[InvitationRequest] = []
        """Every POST /invitations that (may have) mailed the guest its invitation again."""
        self.invite_error: GraphError | None = None
        self.invite_answers_for: str | None = None
        """batch item id -> forced status (e.g. 403 for a privileged user)."""

    async def iter_guest_pages(
        self, *, with_sign_in_activity: bool = True, created: CreatedRange | None = None
    ) -> AsyncIterator[list[DirectoryUser]]:
        async for page in self.guest_pages(with_sign_in_activity=with_sign_in_activity, created=created):
            yield page.users

    async def guest_pages(
        self, *, with_sign_in_activity: bool = True, created: CreatedRange | None = None, resume: str | None = None
    ) -> AsyncIterator[GuestPage]:
        """Pages in id order; the cursor is the offset of the next page (an opaque string, like a nextLink)."""
        if self.list_error:
            raise self.list_error
        guests = [u for u in sorted(self.users.values(), key=lambda u: u.id) if u.user_type == "Guest"]
        start = int(resume) if resume else 0
        if not guests:
            yield GuestPage([], None)  # Graph answers an empty first page
        while start < len(guests):
            self.pages_read += 1
            end = start + self.page_size
            yield GuestPage(guests[start:end], str(end) if end < len(guests) else None)
            start = end

    async def get_users(self, user_ids: Sequence[str], *, with_sign_in_activity: bool) -> list[DirectoryUser]:
        return [self.users[uid] for uid in user_ids if uid in self.users]

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        return self.users.get(user_id)

    async def list_subscribed_skus(self) -> list[SubscribedSku]:
        return list(self.skus.values())

    async def assign_license(self, user_id: str, sku_id: str, disabled_plans: Sequence[str] = ()) -> None:
        sku = self.skus[sku_id]
        if sku.free_units <= 0:
            raise GraphError(400, "Request_BadRequest", "does not have any available licenses")
        self.skus[sku_id] = replace(sku, consumed_units=sku.consumed_units + 1)
        user = self.users[user_id]
        self.users[user_id] = replace(
            user,
            assigned_sku_ids=user.assigned_sku_ids | {sku_id},
            direct_sku_ids=(user.direct_sku_ids or frozenset()) | {sku_id},
        )
        self.writes.append(f"license {user_id} {sku_id}")

    async def add_group_member(self, group_id: str, user_id: str) -> bool:
        self.groups.setdefault(group_id, set()).add(user_id)
        self.writes.append(f"join {group_id} {user_id}")
        return True

    async def count_guests(self) -> int:
        return sum(1 for u in self.users.values() if u.user_type == "Guest")

    async def transitive_member_pages(self, group_id: str) -> AsyncIterator[MemberPage]:
        """Like Graph: every member reached through nested groups once (cycles end), the group itself left out."""
        if f"transitiveMembers:{group_id}" in self.item_status:
            status = self.item_status[f"transitiveMembers:{group_id}"]
            raise GraphError(status, "Authorization_RequestDenied", "Insufficient privileges (injected)")
        seen, found, pending = {group_id}, [], sorted(self.groups.get(group_id, ()))
        while pending:
            member = pending.pop()
            if member not in seen:
                seen.add(member)
                found.append(member)
                pending.extend(sorted(self.groups.get(member, ())))
        found.sort()
        for start in range(0, max(1, len(found)), self.member_page_size):
            chunk = found[start : start + self.member_page_size]
            self.member_pages_read[group_id] = self.member_pages_read.get(group_id, 0) + 1
            yield MemberPage(tuple(m for m in chunk if m not in self.groups), len(chunk))

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]:
        return {uid: list(self.sponsors.get(uid, [])) for uid in user_ids}

    async def send_mail(self, mail: OutgoingMail) -> None:
        self.outbox.append(mail)

    async def resend_invitation(self, request: InvitationRequest) -> SentInvitation:
        """POST /invitations: recorded in `invitations` when Graph would have mailed it; `invite_error` (raised
        once, then cleared) plays a refusal or a timeout; `invite_answers_for` answers for another user."""
        if self.invite_error is not None:
            error, self.invite_error = self.invite_error, None
            if error.status is None or error.status >= 500:
                self.invitations.append(request)  # a timeout or a 5xx: Graph may well have sent it
            raise error
        self.invitations.append(request)
        return SentInvitation(self.invite_answers_for or request.user_id, "PendingAcceptance")

    async def batch(self, requests: Sequence[BatchRequest]) -> list[BatchResult]:
        if any(r.method != "GET" for r in requests):
            self.batch_calls += 1
            if self.crash_on_batch == self.batch_calls:
                raise GraphError(None, "transport", "connection reset (injected)")
        return [self._one(r) for r in requests]

    def _one(self, r: BatchRequest) -> BatchResult:
        if r.id in self.item_status:
            return BatchResult(r.id, self.item_status[r.id], _error(self.item_status[r.id], "Forbidden"))
        parts = r.url.split("?")[0].strip("/").split("/")
        if r.method == "GET" and parts[0] == "groups":
            return BatchResult(r.id, 200, {"value": [{"id": m} for m in sorted(self.groups.get(parts[1], ()))]})
        if parts[0] == "directory" and r.method == "POST":
            user = self.deleted.pop(parts[2], None)
            if user is None:
                return BatchResult(r.id, 404, _error(404, "Request_ResourceNotFound"))
            self.users[user.id] = user
            self.writes.append(f"restore {user.id}")
            return BatchResult(r.id, 200, {"id": user.id})
        if r.method == "DELETE" and parts[0] == "groups":  # /groups/{id}/members/{user}/$ref
            members = self.groups.get(parts[1], set())
            if parts[3] not in members:
                return BatchResult(r.id, 404, _error(404, "Request_ResourceNotFound"))
            members.discard(parts[3])
            self.writes.append(f"leave {parts[1]} {parts[3]}")
            return BatchResult(r.id, 204)
        user_id = parts[1]
        user = self.users.get(user_id)
        if user is None:
            return BatchResult(r.id, 404, _error(404, "Request_ResourceNotFound"))
        if r.method == "POST" and parts[-1] == "assignLicense":
            removed = {str(sku) for sku in (r.body or {})["removeLicenses"]}
            if not removed <= set(user.direct_sku_ids or ()):
                return BatchResult(r.id, 400, _error(400, "User does not have a corresponding license."))
            for sku_id in removed:
                sku = self.skus.get(sku_id)
                if sku is not None:
                    self.skus[sku_id] = replace(sku, consumed_units=sku.consumed_units - 1)
            self.users[user_id] = replace(
                user,
                assigned_sku_ids=user.assigned_sku_ids - removed,
                direct_sku_ids=(user.direct_sku_ids or frozenset()) - removed,
            )
            self.writes.append(f"unlicense {user_id} {','.join(sorted(removed))}")
            return BatchResult(r.id, 200, {"id": user_id})
        if r.method == "PATCH":
            enabled = bool((r.body or {})["accountEnabled"])
            self.users[user_id] = replace(user, account_enabled=enabled)
            self.writes.append(f"{'enable' if enabled else 'disable'} {user_id}")
            return BatchResult(r.id, 204)
        if r.method == "POST":
            self.writes.append(f"revoke {user_id}")
            return BatchResult(r.id, 200, {"value": True})
        if r.method == "DELETE":
            self.deleted[user_id] = self.users.pop(user_id)
            self.writes.append(f"delete {user_id}")
            return BatchResult(r.id, 204)
        raise AssertionError(f"unexpected batch item {r}")

    def count(self, prefix: str) -> int:
        return sum(1 for w in self.writes if w.startswith(prefix))


class MemoryReportStore(ReportStore):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.parts: dict[tuple[str, str], bytes] = {}

    async def write(self, name: str, content: bytes, content_type: str) -> str:
        self.files[name] = content
        return f"memory://{name}"

    async def write_stream(self, name: str, chunks: AsyncIterable[bytes], content_type: str) -> str:
        return await self.write(name, b"".join([chunk async for chunk in chunks]), content_type)

    async def read(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise ReportStoreError(f"report {name} is missing") from None

    async def put_part(self, report: str, name: str, content: bytes) -> None:
        self.parts[report, name] = content

    async def get_part(self, report: str, name: str) -> bytes:
        try:
            return self.parts[report, name]
        except KeyError:
            raise ReportStoreError(f"part {report}/{name} is missing") from None


async def items_of(deps: StaleDeps, plan: StalePlan) -> list[PlanItem]:
    """A finished run's items with their outcomes, read back from its parts in the report store."""
    return [item async for item in iter_items(deps.reports, plan)]
