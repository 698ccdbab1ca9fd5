"""The guest posture checks: each check passes, warns, fails and shows `unknown` on the evidence an admin would
expect (shared.domain.posture), and the service turns every refused read into `unknown`, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.directory import DirectoryContact, DirectoryUser, ServicePlan, SignIn, SignInActivity, SubscribedSku
from shared.domain.posture import (
    GUEST_INVITER_ROLE,
    GUEST_ROLE_DEFAULT,
    GUEST_ROLE_MEMBER,
    GUEST_ROLE_RESTRICTED,
    AuthorizationSettings,
    BlockedGuests,
    CaPolicy,
    Check,
    HygieneCounts,
    HygieneRules,
    PostureReport,
    RiskFlow,
    RoleHolder,
    Status,
    Unavailable,
    check_guest_access,
    check_guest_mfa,
    check_hygiene,
    check_invites,
    check_premium,
    check_risk_policies,
    count_guest,
    premium_of,
)
from shared.ports.graph import GraphError
from shared.services.posture import PostureConfig, PostureDeps, latest_posture, run_posture, save_posture
from tests.fakes.state import MemoryStateStore
from tests.unit.risk_fakes import blocked

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
P1 = "41781fb2-bc02-4b7c-bd55-b576c07bb09d"
GUESTS_GROUP = "0f0f0f0f-1111-2222-3333-444444444444"
ALL_GUEST_TYPES = frozenset({"internalGuest", "b2bCollaborationGuest", "b2bCollaborationMember"})
NO_ACCESS = Unavailable("Policy.Read.All not granted (Graph 403 Authorization_RequestDenied)")


def settings(invites: str | None = "adminsAndGuestInviters", role: str | None = GUEST_ROLE_RESTRICTED):
    return AuthorizationSettings(invites, role)


def guest_mfa(**kw: object) -> CaPolicy:
    base: dict[str, object] = {
        "id": "p-mfa",
        "name": "MFA for guest users",
        "state": "enabled",
        "include_guest_types": ALL_GUEST_TYPES,
        "include_apps": frozenset({"All"}),
        "controls": frozenset({"mfa"}),
    }
    base.update(kw)
    return CaPolicy(**base)  # type: ignore[arg-type]


def risk_policy(**kw: object) -> CaPolicy:
    base: dict[str, object] = {
        "id": "p-risk",
        "name": "Block high sign-in risk",
        "state": "enabled",
        "include_users": frozenset({"All"}),
        "include_apps": frozenset({"All"}),
        "controls": frozenset({"block"}),
        "sign_in_risk_levels": ("high",),
    }
    base.update(kw)
    return CaPolicy(**base)  # type: ignore[arg-type]


def sku(plans: Sequence[str] = (P1,), enabled: int = 10, consumed: int = 4, status: str = "Success") -> SubscribedSku:
    return SubscribedSku(
        "sku-1",
        "AAD_PREMIUM",
        enabled,
        consumed,
        "Enabled",
        "User",
        tuple(ServicePlan(p, "plan", status) for p in plans),
    )


# --- 1. who can invite ----------------------------------------------------------------------------------------
def test_invites_from_everyone_fails_because_guests_invite_guests() -> None:
    check = check_invites(settings("everyone"), [])
    assert check.status == Status.FAIL
    assert "guests invite guests" in check.summary
    assert "allowInvitesFrom = everyone" in check.evidence[0]
    assert "External collaboration settings" in check.portal


def test_invites_by_all_members_warns_and_admins_only_passes() -> None:
    assert check_invites(settings("adminsGuestInvitersAndAllMembers"), []).status == Status.WARN
    assert check_invites(settings("adminsAndGuestInviters"), []).status == Status.PASS
    assert check_invites(settings("none"), []).status == Status.PASS


def test_a_guest_holding_guest_inviter_fails_and_holders_are_listed() -> None:
    holders = [
        RoleHolder("u1", "Megan Bowen", "user", "megan@contoso.com", "Member"),
        RoleHolder("g1", "Partner managers", "group"),
        RoleHolder("x1", "Pat Partner", "user", "pat_fabrikam.com#EXT#@contoso.onmicrosoft.com", "Guest"),
    ]
    check = check_invites(settings("adminsAndGuestInviters"), holders)
    assert check.status == Status.FAIL
    assert "1 guest(s) hold Guest Inviter" in check.summary
    listed = check.evidence[1]
    assert "Megan Bowen (user" in listed and "Partner managers (group)" in listed and "Pat Partner (guest" in listed


def test_invites_unknown_without_the_policy_and_holders_unknown_without_role_reads() -> None:
    check = check_invites(NO_ACCESS, [])
    assert check.status == Status.UNKNOWN and "Policy.Read.All" in check.summary
    partial = check_invites(settings(), Unavailable("RoleManagement.Read.Directory not granted"))
    assert partial.status == Status.PASS
    assert "Guest Inviter holders: unknown (RoleManagement.Read.Directory not granted)" in partial.evidence


# --- 2. guest access -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "status"),
    [
        (GUEST_ROLE_RESTRICTED, Status.PASS),
        (GUEST_ROLE_DEFAULT, Status.WARN),
        (GUEST_ROLE_MEMBER, Status.FAIL),
        ("11111111-2222-3333-4444-555555555555", Status.UNKNOWN),
    ],
)
def test_guest_access_level(role: str, status: Status) -> None:
    check = check_guest_access(settings(role=role))
    assert check.status == status
    assert role in check.evidence[0]


def test_guest_access_unknown_without_the_policy() -> None:
    assert check_guest_access(NO_ACCESS).status == Status.UNKNOWN


# --- 3. MFA for guests ------------------------------------------------------------------------------------------
def test_mfa_for_guests_on_all_apps_passes() -> None:
    check = check_guest_mfa([guest_mfa()], premium_of([sku()]))
    assert check.status == Status.PASS
    assert "'MFA for guest users'" in check.summary


def test_an_authentication_strength_counts_as_mfa() -> None:
    policy = guest_mfa(controls=frozenset(), authentication_strength="Multifactor authentication")
    assert check_guest_mfa([policy], premium_of([sku()])).status == Status.PASS


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": "enabledForReportingButNotEnforced"}, "report-only"),
        ({"include_apps": frozenset({"Office365"})}, "not all cloud apps"),
        ({"exclude_apps": frozenset({"00000003-0000-0ff1-ce00-000000000000"})}, "not all cloud apps"),
    ],
)
def test_report_only_or_partial_apps_warn(change: dict[str, object], reason: str) -> None:
    check = check_guest_mfa([guest_mfa(**change)], premium_of([sku()]))
    assert check.status == Status.WARN
    assert reason in check.summary


def test_no_policy_for_guests_fails() -> None:
    members_only = guest_mfa(
        include_guest_types=frozenset(),
        include_users=frozenset({"All"}),
        exclude_users=frozenset({"GuestsOrExternalUsers"}),
    )
    disabled = guest_mfa(state="disabled")
    check = check_guest_mfa([members_only, disabled], premium_of([sku()]))
    assert check.status == Status.FAIL
    assert "Guest or external users" in check.fix


def test_mfa_for_guests_without_p1_fails_because_it_is_not_enforced() -> None:
    check = check_guest_mfa([guest_mfa()], premium_of([]))
    assert check.status == Status.FAIL
    assert "not enforced" in check.summary


def test_a_grant_graph_did_not_return_warns_instead_of_guessing() -> None:
    unseen = guest_mfa(controls=frozenset(), strength_read=False)
    check = check_guest_mfa([unseen], premium_of([sku()]))
    assert check.status == Status.WARN
    assert "cannot confirm" in check.summary


def test_mfa_unknown_without_policy_read() -> None:
    assert check_guest_mfa(NO_ACCESS, premium_of([sku()])).status == Status.UNKNOWN


# --- 4. Entra ID P1/P2 -------------------------------------------------------------------------------------------
def test_premium_present_and_assigned_passes() -> None:
    check = check_premium(premium_of([sku()]))
    assert check.status == Status.PASS
    assert "seats: 10 bought, 4 assigned" in check.evidence


def test_premium_bought_but_unassigned_warns() -> None:
    assert check_premium(premium_of([sku(consumed=0)])).status == Status.WARN


def test_no_premium_plan_fails_and_a_disabled_plan_does_not_count() -> None:
    assert check_premium(premium_of([sku(plans=("efb87545-963c-4e0d-99df-69c6916d9eb0",))])).status == Status.FAIL
    assert check_premium(premium_of([sku(status="Disabled")])).status == Status.FAIL


def test_premium_unknown_without_organization_read() -> None:
    assert check_premium(Unavailable("Organization.Read.All not granted")).status == Status.UNKNOWN


# --- 5. risk policies ---------------------------------------------------------------------------------------------
FLOW_ON = RiskFlow(NOW - timedelta(minutes=5), NOW)
FLOW_OFF = RiskFlow(None, NOW)
NONE_BLOCKED = BlockedGuests(30, 0, 0)


def test_risk_policy_excluding_the_guest_group_passes() -> None:
    policy = risk_policy(exclude_groups=frozenset({GUESTS_GROUP}))
    check = check_risk_policies([policy], FLOW_OFF, NONE_BLOCKED, GUESTS_GROUP)
    assert check.status == Status.PASS
    assert "(guests excluded)" in check.evidence[0]


def test_no_risk_policy_passes_and_says_the_legacy_policies_are_unreadable() -> None:
    check = check_risk_policies([guest_mfa()], FLOW_OFF, NONE_BLOCKED)
    assert check.status == Status.PASS
    assert any("not readable through Graph" in line for line in check.evidence)


def test_risk_policy_including_guests_fails_when_nobody_tells_the_guest() -> None:
    check = check_risk_policies([risk_policy()], FLOW_OFF, BlockedGuests(30, 3, 7, ("fabrikam.com",)))
    assert check.status == Status.FAIL
    assert "only its home tenant can" in check.summary
    assert "guests blocked by home-tenant risk in the last 30 days: 3 (7 sign-ins) from fabrikam.com" in check.evidence


def test_risk_policy_including_guests_warns_while_guestwardens_risk_flow_runs() -> None:
    check = check_risk_policies([risk_policy()], FLOW_ON, NONE_BLOCKED)
    assert check.status == Status.WARN
    assert any("risk flow is on" in line for line in check.evidence)


def test_report_only_risk_policy_and_blocked_guests_without_a_local_policy_warn() -> None:
    report_only = risk_policy(state="enabledForReportingButNotEnforced")
    assert check_risk_policies([report_only], FLOW_OFF, NONE_BLOCKED).status == Status.WARN
    assert check_risk_policies([], FLOW_OFF, BlockedGuests(30, 2, 2)).status == Status.WARN


def test_risk_unknown_without_policy_read_keeps_what_was_read() -> None:
    check = check_risk_policies(NO_ACCESS, FLOW_ON, Unavailable("AuditLog.Read.All not granted"))
    assert check.status == Status.UNKNOWN
    assert any("unknown (AuditLog.Read.All not granted)" in line for line in check.evidence)


def test_a_stopped_risk_flow_is_not_on() -> None:
    assert not RiskFlow(NOW - timedelta(days=3), NOW).on
    assert "stopped" in RiskFlow(NOW - timedelta(days=3), NOW).describe()


# --- 6. hygiene -----------------------------------------------------------------------------------------------------
RULES = HygieneRules(NOW, pending_days=30, inactive_days=90)


def guest(uid: str, **kw: object) -> DirectoryUser:
    base: dict[str, object] = {
        "id": uid,
        "user_type": "Guest",
        "external_user_state": "Accepted",
        "external_user_state_changed": NOW - timedelta(days=400),
        "created": NOW - timedelta(days=400),
        "sign_in_activity": SignInActivity(last_sign_in=NOW - timedelta(days=3)),
    }
    base.update(kw)
    return DirectoryUser(**base)  # type: ignore[arg-type]


def test_hygiene_counts_each_problem_once() -> None:
    counts = HygieneCounts()
    counts = count_guest(counts, guest("ok"), True, RULES)
    counts = count_guest(counts, guest("lonely"), False, RULES)
    counts = count_guest(counts, guest("never", sign_in_activity=None), True, RULES)
    counts = count_guest(
        counts,
        guest(
            "pending",
            external_user_state="PendingAcceptance",
            sign_in_activity=None,
            external_user_state_changed=NOW - timedelta(days=45),
        ),
        True,
        RULES,
    )
    counts = count_guest(
        counts,
        guest(
            "fresh-invite", external_user_state="PendingAcceptance", external_user_state_changed=NOW - timedelta(days=2)
        ),
        True,
        RULES,
    )
    counts = count_guest(
        counts,
        guest(
            "idle-licensed",
            assigned_sku_ids=frozenset({"sku"}),
            sign_in_activity=SignInActivity(last_sign_in=NOW - timedelta(days=200)),
        ),
        True,
        RULES,
    )
    assert counts == HygieneCounts(
        guests=6, without_sponsor=1, never_signed_in=1, pending_too_long=1, licensed_inactive=1
    )


def test_hygiene_passes_clean_warns_on_some_and_fails_past_the_share() -> None:
    assert check_hygiene(HygieneCounts(guests=10), RULES).status == Status.PASS
    warn = check_hygiene(HygieneCounts(guests=10, without_sponsor=2), RULES)
    assert warn.status == Status.WARN and "2 without a sponsor" in warn.summary
    assert check_hygiene(HygieneCounts(guests=10, pending_too_long=3), RULES, fail_ratio=0.25).status == Status.FAIL
    assert check_hygiene(Unavailable("AuditLog.Read.All not granted"), RULES).status == Status.UNKNOWN


# --- the service: every refused read is `unknown`, the report is kept -----------------------------------------------
class FakePostureGraph:
    def __init__(self) -> None:
        self.authorization: AuthorizationSettings | GraphError = settings()
        self.policies: list[CaPolicy] | GraphError = [
            guest_mfa(),
            risk_policy(exclude_groups=frozenset({GUESTS_GROUP})),
        ]
        self.holders: list[RoleHolder] | GraphError = [RoleHolder("u1", "Megan", user_type="Member")]
        self.skus: list[SubscribedSku] | GraphError = [sku()]
        self.sign_ins: list[SignIn] | GraphError = []
        self.guests: list[DirectoryUser] | GraphError = [guest("g1")]
        self.sponsored: set[str] = {"g1"}
        self.activity_error: GraphError | None = None
        self.scans: list[bool] = []
        self.filters: list[str] = []

    @staticmethod
    def _give(value: object) -> object:
        if isinstance(value, GraphError):
            raise value
        return value

    async def get_authorization_policy(self) -> AuthorizationSettings:
        return self._give(self.authorization)  # type: ignore[return-value]

    async def list_conditional_access_policies(self) -> list[CaPolicy]:
        return self._give(self.policies)  # type: ignore[return-value]

    async def list_role_holders(self, role_definition_id: str) -> list[RoleHolder]:
        assert role_definition_id == GUEST_INVITER_ROLE
        return self._give(self.holders)  # type: ignore[return-value]

    async def list_subscribed_skus(self) -> list[SubscribedSku]:
        return self._give(self.skus)  # type: ignore[return-value]

    async def iter_sign_in_pages(
        self, since: datetime, until: datetime, *, extra_filter: str | None = None
    ) -> AsyncIterator[list[SignIn]]:
        self.filters.append(extra_filter or "")
        entries = self._give(self.sign_ins)
        code = int((extra_filter or "0").rsplit(" ", 1)[-1])
        yield [s for s in entries if s.error_code == code and since <= s.created <= until]  # type: ignore[attr-defined]

    async def iter_guest_pages(self, *, with_sign_in_activity: bool = True) -> AsyncIterator[list[DirectoryUser]]:
        self.scans.append(with_sign_in_activity)
        if with_sign_in_activity and self.activity_error is not None:
            raise self.activity_error
        yield self._give(self.guests)  # type: ignore[misc]

    async def sponsors_of(self, user_ids: Sequence[str]) -> dict[str, list[DirectoryContact]]:
        return {uid: [DirectoryContact("s1")] for uid in user_ids if uid in self.sponsored}


def deps_for(graph: FakePostureGraph, state: MemoryStateStore | None = None) -> PostureDeps:
    config = PostureConfig(pending_days=30, inactive_days=90, guest_group_id=GUESTS_GROUP)
    return PostureDeps(graph, state, config, lambda: NOW)


async def test_a_well_kept_tenant_passes_every_check() -> None:
    report = await run_posture(deps_for(FakePostureGraph()))
    assert [c.key for c in report.checks] == [
        "invites",
        "guest-access",
        "guest-mfa",
        "premium",
        "risk-policies",
        "hygiene",
    ]
    assert {c.key: c.status for c in report.checks} == dict.fromkeys(
        ["invites", "guest-access", "guest-mfa", "premium", "risk-policies", "hygiene"], Status.PASS
    )
    assert report.status == Status.PASS


async def test_refused_reads_become_unknown_with_the_missing_permission_named() -> None:
    graph = FakePostureGraph()
    denied = GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    graph.authorization = graph.policies = graph.holders = graph.skus = graph.sign_ins = graph.guests = denied
    report = await run_posture(deps_for(graph))
    assert {c.status for c in report.checks} == {Status.UNKNOWN}
    by_key = {c.key: c for c in report.checks}
    assert "Policy.Read.All not granted" in by_key["invites"].summary
    assert "Organization.Read.All not granted" in by_key["premium"].summary
    assert "User.Read.All not granted" in by_key["hygiene"].summary
    assert any("AuditLog.Read.All and Directory.Read.All not granted" in e for e in by_key["risk-policies"].evidence)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "not premium"), "no Entra ID P1/P2"),
        (GraphError(403, "Authorization_RequestDenied", "Insufficient privileges"), "AuditLog.Read.All not granted"),
    ],
)
async def test_without_sign_in_data_hygiene_still_counts_what_needs_none(error: GraphError, reason: str) -> None:
    graph = FakePostureGraph()
    graph.activity_error = error
    graph.guests = [
        guest("g1"),
        guest("lonely"),
        guest(
            "old-invite", external_user_state="PendingAcceptance", external_user_state_changed=NOW - timedelta(days=60)
        ),
    ]
    report = await run_posture(deps_for(graph))
    hygiene = next(c for c in report.checks if c.key == "hygiene")
    assert graph.scans == [True, False]  # asked with signInActivity, refused, read again without it
    assert hygiene.status == Status.FAIL  # 2 of 3 guests without a sponsor
    assert "without a sponsor: 2" in hygiene.evidence and "invitation pending too long: 1" in hygiene.evidence
    assert not any(line.startswith("joined but never signed in") for line in hygiene.evidence)
    assert any(
        line.startswith("never signed in, licensed while inactive: unknown") and reason in line
        for line in hygiene.evidence
    )


async def test_blocked_guests_are_counted_from_both_home_risk_codes_in_the_window() -> None:
    graph = FakePostureGraph()
    graph.policies = [risk_policy()]
    graph.sign_ins = [
        blocked("s1", NOW - timedelta(days=1), "g1"),
        blocked("s2", NOW - timedelta(days=2), "g1"),
        blocked("s3", NOW - timedelta(days=3), "g2", code=530032),
        blocked("s4", NOW - timedelta(days=45), "g3"),
    ]
    report = await run_posture(deps_for(graph))
    risk = next(c for c in report.checks if c.key == "risk-policies")
    assert risk.status == Status.FAIL
    assert "guests blocked by home-tenant risk in the last 30 days: 2 (3 sign-ins) from fabrikam.com" in risk.evidence
    assert graph.filters == ["status/errorCode eq 53011", "status/errorCode eq 530032"]


async def test_the_risk_flow_is_on_when_its_poller_ran_recently() -> None:
    state = MemoryStateStore()
    await state.put(
        "risk-detection", "signins-watermark", {"until": (NOW - timedelta(minutes=3)).isoformat()}, etag=None
    )
    graph = FakePostureGraph()
    graph.policies = [risk_policy()]
    report = await run_posture(deps_for(graph, state))
    assert next(c for c in report.checks if c.key == "risk-policies").status == Status.WARN


async def test_the_report_is_kept_and_read_back() -> None:
    state = MemoryStateStore()
    report = await run_posture(deps_for(FakePostureGraph(), state))
    await save_posture(state, report)
    again = await latest_posture(state)
    assert again == report
    assert await latest_posture(MemoryStateStore()) is None


def test_report_json_roundtrip_and_worst_status() -> None:
    checks = (
        Check("invites", "Who can invite guests", Status.PASS, "ok"),
        Check("premium", "Entra ID P1/P2", Status.UNKNOWN, "?"),
        Check("hygiene", "Guest hygiene", Status.WARN, "3 without a sponsor", ("guests: 3",)),
    )
    report = PostureReport(NOW, checks)
    assert report.status == Status.WARN
    assert report.counts() == {"pass": 1, "warn": 1, "fail": 0, "unknown": 1}
    assert PostureReport.from_json(report.as_json()) == report
    assert replace(report, checks=()).status == Status.PASS


def test_a_risk_policy_excluding_groups_warns_until_the_guest_group_is_named() -> None:
    policy = risk_policy(exclude_groups=frozenset({GUESTS_GROUP}))
    check = check_risk_policies([policy], FLOW_OFF, NONE_BLOCKED)
    assert check.status == Status.WARN
    assert "POSTURE_GUEST_GROUP_ID" in check.summary
    assert "guests unless one holds them all" in check.evidence[0]
    assert check_risk_policies([policy], FLOW_OFF, NONE_BLOCKED, GUESTS_GROUP).status == Status.PASS
    other_group = "99999999-8888-7777-6666-555555555555"
    assert check_risk_policies([policy], FLOW_OFF, NONE_BLOCKED, other_group).status == Status.FAIL


def test_a_risk_conditioned_mfa_policy_is_not_the_guest_mfa_baseline() -> None:
    password_change = guest_mfa(
        include_guest_types=frozenset(),
        include_users=frozenset({"All"}),
        controls=frozenset({"mfa", "passwordchange"}),
        user_risk_levels=("high",),
    )
    assert check_guest_mfa([password_change], premium_of([sku()])).status == Status.FAIL
