"""The risk rule (shared.domain.risk): which blocked sign-ins are a guest's home-tenant risk, and incidents."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.directory import AppliedPolicy, DirectoryUser, SignIn
from shared.domain.risk import (
    Cause,
    Ignored,
    Incident,
    RiskBlock,
    classify_block,
    group_incidents,
    incident_id,
    is_cross_tenant,
    judge_user,
    prune_incidents,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOME = "b7ccb739-6107-5f1c-9c79-0d0e7279ddfc"
RESOURCE = "2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"
HOME_RISK_TEXT = "User blocked due to risk on home tenant."
CA_TEXT = "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance."
QUIET = timedelta(hours=1)


def sign_in(code: int, reason: str | None = None, *, sid: str = "s1", **kw: object) -> SignIn:
    base: dict[str, object] = {
        "id": sid,
        "created": NOW,
        "user_id": "g1",
        "user_principal_name": "rita_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "app_display_name": "Microsoft Teams",
        "error_code": code,
        "failure_reason": reason,
        "additional_details": None,
        "home_tenant_id": HOME,
        "resource_tenant_id": RESOURCE,
        "risk_state": "none",
        "risk_level_during_sign_in": "none",
    }
    base.update(kw)
    return SignIn(**base)  # type: ignore[arg-type]


RISK_POLICY = (AppliedPolicy("Block guests at high sign-in risk", "failure"),)
DEVICE_POLICY = (AppliedPolicy("Require compliant device", "failure"),)

CASES: list[tuple[str, SignIn, Cause | Ignored]] = [
    ("53011 home-tenant risk", sign_in(53011, HOME_RISK_TEXT), Cause.HOME_TENANT_RISK),
    ("53011 even without the text", sign_in(53011, None), Cause.HOME_TENANT_RISK),
    ("530032 with the home-tenant-risk text", sign_in(530032, HOME_RISK_TEXT), Cause.HOME_TENANT_RISK),
    (
        "530032 with only the riskyguestuser link",
        sign_in(530032, "Blocked.", additional_details="see https://aka.ms/riskyguestuser"),
        Cause.HOME_TENANT_RISK,
    ),
    (
        "530032 as a tenant security policy",
        sign_in(530032, "The tenant admin has configured a security policy that blocks this request."),
        Ignored.SECURITY_POLICY,
    ),
    (
        "53003 risk-conditioned CA (high sign-in risk)",
        sign_in(53003, CA_TEXT, risk_level_during_sign_in="high", risk_state="atRisk", applied_policies=RISK_POLICY),
        Cause.RISK_CONDITIONAL_ACCESS,
    ),
    (
        "53003 with a risky user state only",
        sign_in(53003, CA_TEXT, risk_state="confirmedCompromised"),
        Cause.RISK_CONDITIONAL_ACCESS,
    ),
    (
        "53003 device compliance, no risk",
        sign_in(53003, CA_TEXT, applied_policies=DEVICE_POLICY),
        Ignored.CONDITIONAL_ACCESS_WITHOUT_RISK,
    ),
    (
        "53003 with hidden risk is not proof of risk",
        sign_in(53003, CA_TEXT, risk_level_during_sign_in="hidden"),
        Ignored.CONDITIONAL_ACCESS_WITHOUT_RISK,
    ),
    (
        "53004 proof-up blocked, risky",
        sign_in(53004, "Proof up blocked", risk_level_during_sign_in="medium"),
        Cause.RISK_PROOF_UP,
    ),
    ("53004 without risk", sign_in(53004, "Proof up blocked"), Ignored.CONDITIONAL_ACCESS_WITHOUT_RISK),
    ("50053 locked", sign_in(50053, "Account is locked"), Ignored.LOCKED_OR_MALICIOUS_IP),
    (
        "50053 locked even with risky words",
        sign_in(50053, "Sign-in blocked from a malicious IP address", risk_level_during_sign_in="high"),
        Ignored.LOCKED_OR_MALICIOUS_IP,
    ),
    (
        "500212 outbound cross-tenant policy",
        sign_in(500212, "NotAllowedByOutboundPolicyTenant"),
        Ignored.CROSS_TENANT_POLICY,
    ),
    (
        "500213 inbound cross-tenant policy",
        sign_in(500213, "NotAllowedByInboundPolicyTenant"),
        Ignored.CROSS_TENANT_POLICY,
    ),
    ("50126 wrong password", sign_in(50126, "invalid username or password"), Ignored.WRONG_PASSWORD),
    ("success", sign_in(0), Ignored.SUCCESS),
    ("success with risk is still a success", sign_in(0, risk_level_during_sign_in="high"), Ignored.SUCCESS),
    ("another failure", sign_in(50076, "MFA required"), Ignored.OTHER_FAILURE),
]


@pytest.mark.parametrize(("case", "entry", "expected"), CASES, ids=[c[0] for c in CASES])
def test_block_classification(case: str, entry: SignIn, expected: Cause | Ignored) -> None:
    assert classify_block(entry) == expected


def test_guest_is_another_tenant_and_user_type_guest() -> None:
    assert is_cross_tenant(sign_in(53011))
    assert not is_cross_tenant(sign_in(53011, home_tenant_id=RESOURCE))
    assert not is_cross_tenant(sign_in(53011, home_tenant_id=RESOURCE.upper()))
    assert not is_cross_tenant(sign_in(53011, home_tenant_id=None))
    assert judge_user(DirectoryUser("g1", user_type="Guest")) is None
    assert judge_user(DirectoryUser("m1", user_type="Member")) == Ignored.MEMBER
    # an external-looking member (#EXT# UPN, userType Member) is still a member
    member_ext = DirectoryUser("m2", user_principal_name="x_fabrikam.com#EXT#@contoso.com", user_type="Member")
    assert judge_user(member_ext) == Ignored.MEMBER
    assert judge_user(None) == Ignored.USER_NOT_FOUND


def block(sid: str, minutes: float, user: str = "g1") -> RiskBlock:
    return RiskBlock(
        sign_in(53011, HOME_RISK_TEXT, sid=sid, user_id=user, created=NOW + timedelta(minutes=minutes)),
        Cause.HOME_TENANT_RISK,
    )


def test_blocks_within_the_quiet_period_are_one_incident() -> None:
    grouping = group_incidents([block("a", 0), block("b", 12), block("c", 50)], {}, QUIET)
    [incident] = grouping.new
    assert incident.id == incident_id("g1", "a")
    assert (incident.started, incident.last_seen, incident.blocks) == (NOW, NOW + timedelta(minutes=50), 3)


def test_a_block_after_the_quiet_period_opens_a_new_incident() -> None:
    grouping = group_incidents([block("a", 0), block("b", 61)], {}, QUIET)
    assert [i.id for i in grouping.new] == [incident_id("g1", "a"), incident_id("g1", "b")]


def test_incidents_are_per_guest() -> None:
    grouping = group_incidents([block("a", 0, "g1"), block("b", 1, "g2")], {}, QUIET)
    assert sorted(i.user_id for i in grouping.new) == ["g1", "g2"]


def test_quiet_period_is_configurable() -> None:
    blocks = [block("a", 0), block("b", 30)]
    assert len(group_incidents(blocks, {}, timedelta(minutes=20)).new) == 2
    assert len(group_incidents(blocks, {}, timedelta(minutes=45)).new) == 1


def test_order_of_arrival_does_not_matter() -> None:
    forward = group_incidents([block("a", 0), block("b", 12)], {}, QUIET)
    backward = group_incidents([block("b", 12), block("a", 0)], {}, QUIET)
    assert [i.id for i in forward.new] == [i.id for i in backward.new]


def test_overlapping_polls_neither_lose_nor_double_an_incident() -> None:
    """Poll 1 sees a; poll 2 re-reads a (overlap) and a late log b that happened before poll 1 ran; poll 3 sees
    c after the quiet period. Exactly two incidents in all, each opened once."""
    first = group_incidents([block("a", 0)], {}, QUIET)
    assert len(first.new) == 1
    second = group_incidents([block("a", 0), block("b", -5)], first.incidents, QUIET, frozenset({"a"}))
    assert second.new == ()
    [incident] = second.incidents["g1"]
    assert (incident.started, incident.blocks) == (NOW - timedelta(minutes=5), 2)
    third = group_incidents([block("b", -5), block("c", 120)], second.incidents, QUIET, frozenset({"a", "b"}))
    assert [i.id for i in third.new] == [incident_id("g1", "c")]
    assert third.already_seen == 1


def test_a_late_log_outside_every_known_incident_is_not_lost() -> None:
    """A block that arrives late, hours before the known incident, is an incident of its own."""
    known = group_incidents([block("a", 0)], {}, QUIET).incidents
    late = group_incidents([block("z", -180)], known, QUIET, frozenset({"a"}))
    assert [i.id for i in late.new] == [incident_id("g1", "z")]


def test_a_late_log_between_two_blocks_joins_and_does_not_split() -> None:
    known = group_incidents([block("a", 0)], {}, QUIET).incidents
    later = group_incidents([block("b", 100), block("m", 50)], known, QUIET, frozenset({"a"}))
    # m (50 min) is within reach of a (0) and b (100) is within reach of m: still one incident
    assert later.new == ()
    assert later.incidents["g1"][0].last_seen == NOW + timedelta(minutes=100)


def test_incident_ids_are_deterministic() -> None:
    assert incident_id("g1", "a") == incident_id("g1", "a")
    assert incident_id("g1", "a") != incident_id("g2", "a")


def test_prune_keeps_only_incidents_a_poll_can_still_reach() -> None:
    old = Incident("old", "g1", NOW - timedelta(days=2), NOW - timedelta(days=2), 1)
    recent = replace(old, id="recent", last_seen=NOW)
    assert prune_incidents([old, recent], NOW - timedelta(hours=3)) == (recent,)
