"""Fakes for the risk flows' service tests: a sign-in log with arrival lag, users, tenants and an outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared.adapters.graph import GraphError
from shared.domain.directory import AppliedPolicy, DirectoryUser, OutgoingMail, SignIn, TenantInformation

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RESOURCE = "2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"
FABRIKAM = "b7ccb739-6107-5f1c-9c79-0d0e7279ddfc"
HOME_RISK = "User blocked due to risk on home tenant."


def guest(user_id: str = "g1", **props: object) -> DirectoryUser:
    base: dict[str, object] = {
        "id": user_id,
        "display_name": "Rita Riskyhome",
        "user_principal_name": f"{user_id}_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "mail": f"{user_id}@fabrikam.com",
        "user_type": "Guest",
        "external_user_state": "Accepted",
    }
    base.update(props)
    return DirectoryUser(**base)  # type: ignore[arg-type]


def member(user_id: str = "m1") -> DirectoryUser:
    return DirectoryUser(user_id, display_name="Diego", mail=f"{user_id}@contoso.com", user_type="Member")


def blocked(
    sid: str, at: datetime, user_id: str = "g1", code: int = 53011, home: str = FABRIKAM, **kw: object
) -> SignIn:
    base: dict[str, object] = {
        "id": sid,
        "created": at,
        "user_id": user_id,
        "user_principal_name": f"{user_id}_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "app_display_name": "Microsoft Teams",
        "error_code": code,
        "failure_reason": HOME_RISK if code == 53011 else "Error validating credentials",
        "additional_details": None,
        "home_tenant_id": home,
        "resource_tenant_id": RESOURCE,
        "risk_state": "none",
        "risk_level_during_sign_in": "none",
        "correlation_id": f"corr-{sid}",
        "applied_policies": (AppliedPolicy("p", "notApplied"),),
    }
    base.update(kw)
    return SignIn(**base)  # type: ignore[arg-type]


class FakeRiskGraph:
    """Sign-ins become visible `lag` after they happened (the log's arrival delay), on the injected clock."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        users: Sequence[DirectoryUser] = (),
        tenants: Sequence[TenantInformation] = (),
        lag: timedelta = timedelta(0),
    ) -> None:
        self.clock = clock
        self.users = {u.id: u for u in users}
        self.tenants = {t.tenant_id: t for t in tenants}
        self.sign_ins: list[SignIn] = []
        self.lag = lag
        self.outbox: list[OutgoingMail] = []
        self.windows: list[tuple[datetime, datetime]] = []
        self.mail_failures: list[GraphError] = []
        self.user_reads = 0

    def add(self, *entries: SignIn) -> None:
        self.sign_ins.extend(entries)

    async def iter_sign_in_pages(self, since: datetime, until: datetime) -> AsyncIterator[list[SignIn]]:
        self.windows.append((since, until))
        now = self.clock()
        visible = [s for s in self.sign_ins if since <= s.created <= until and s.created + self.lag <= now]
        visible.sort(key=lambda s: s.created, reverse=True)
        for start in range(0, len(visible), 2):  # small pages: paging is exercised
            yield visible[start : start + 2]

    async def get_user(self, user_id: str) -> DirectoryUser | None:
        self.user_reads += 1
        return self.users.get(user_id)

    async def find_tenant_information(self, tenant_id: str) -> TenantInformation | None:
        return self.tenants.get(tenant_id)

    async def send_mail(self, mail: OutgoingMail) -> None:
        if self.mail_failures:
            raise self.mail_failures.pop(0)
        self.outbox.append(mail)


class MovingClock:
    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now = self.now + timedelta(**kw)


def renamed(user: DirectoryUser, **props: object) -> DirectoryUser:
    return replace(user, **props)  # type: ignore[arg-type]
