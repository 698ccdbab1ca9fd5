"""The stale-guest policy as a table: every rule of issue 6, boundary days included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain.directory import DirectoryUser, SignInActivity
from shared.domain.stale import Action, Stage, StageMemory, StalePolicy, decide

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
POLICY = StalePolicy(
    inactive_days=90,
    pending_days=30,
    warn_grace_days=14,
    delete_grace_days=30,
    new_guest_grace_days=14,
    exclude_domains=frozenset({"woodgrovebank.com"}),
    exclude_upn_patterns=("auditor*",),
)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def guest(
    interactive: float | None = None,
    non_interactive: float | None = None,
    successful: float | None = None,
    *,
    activity: bool = True,
    **props: Any,
) -> DirectoryUser:
    stamps = (interactive, non_interactive, successful)
    base: dict[str, Any] = {
        "id": "g1",
        "user_type": "Guest",
        "mail": "pat@fabrikam.com",
        "user_principal_name": "pat_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "external_user_state": "Accepted",
        "external_user_state_changed": ago(400),
        "created": ago(401),
        "account_enabled": True,
        "sign_in_activity": SignInActivity(*(ago(d) if d is not None else None for d in stamps))
        if activity and any(d is not None for d in stamps)
        else None,
    }
    base.update(props)
    return DirectoryUser(**base)


def memory(stage: Stage, days_ago: float, *, we_disabled: bool = False) -> StageMemory:
    return StageMemory(stage, ago(days_ago), we_disabled=we_disabled)


CASES: list[tuple[str, DirectoryUser, StageMemory | None, Action, str]] = [
    # last activity = the latest of the three sign-in kinds
    ("all three old", guest(200, 200, 200), None, Action.WARN, "inactive"),
    ("only non-interactive recent (apps)", guest(200, 2, 200), None, Action.KEEP, "active"),
    ("only interactive recent", guest(3, 300, 3), None, Action.KEEP, "active"),
    ("only successful recent", guest(200, 200, 5), None, Action.KEEP, "active"),
    ("failed interactive attempt counts (Graph's field)", guest(1, 250, 250), None, Action.KEEP, "active"),
    ("lastSuccessful missing (pre-2023 data)", guest(100, None, None), None, Action.WARN, "inactive"),
    # threshold boundary: 89 days is active, 90 is stale
    ("89 days inactive", guest(89, 89, 89), None, Action.KEEP, "active"),
    ("90 days inactive (boundary)", guest(90, 90, 90), None, Action.WARN, "inactive"),
    ("89.9 days inactive", guest(89.9, None, None), None, Action.KEEP, "active"),
    # never signed in: judged from acceptance, else creation
    (
        "accepted 200 d ago, never signed in",
        guest(activity=False, external_user_state_changed=ago(200)),
        None,
        Action.WARN,
        "never-signed-in",
    ),
    (
        "accepted 89 d ago, never signed in",
        guest(activity=False, external_user_state_changed=ago(89)),
        None,
        Action.KEEP,
        "active",
    ),
    (
        "accepted 90 d ago, never signed in",
        guest(activity=False, external_user_state_changed=ago(90)),
        None,
        Action.WARN,
        "never-signed-in",
    ),
    (
        "no acceptance date, created 95 d ago",
        guest(activity=False, external_user_state=None, external_user_state_changed=None, created=ago(95)),
        None,
        Action.WARN,
        "never-signed-in",
    ),
    (
        "no date at all and no activity",
        guest(activity=False, external_user_state=None, external_user_state_changed=None, created=None),
        None,
        Action.SKIP,
        "no-date-to-judge-by",
    ),
    (
        "created null but activity 900 d",
        guest(900, None, None, created=None, external_user_state=None, external_user_state_changed=None),
        None,
        Action.WARN,
        "inactive",
    ),
    # never-redeemed invitations: their own threshold
    (
        "pending 30 d (boundary)",
        guest(
            activity=False,
            external_user_state="PendingAcceptance",
            external_user_state_changed=ago(30),
            created=ago(30),
        ),
        None,
        Action.WARN,
        "invitation-not-redeemed",
    ),
    (
        "pending 29 d",
        guest(
            activity=False,
            external_user_state="PendingAcceptance",
            external_user_state_changed=ago(29),
            created=ago(29),
        ),
        None,
        Action.KEEP,
        "active",
    ),
    (
        "pending 120 d",
        guest(
            activity=False,
            external_user_state="PendingAcceptance",
            external_user_state_changed=ago(120),
            created=ago(120),
        ),
        None,
        Action.WARN,
        "invitation-not-redeemed",
    ),
    # only guests are ever touched
    ("member with #EXT# UPN", guest(400, 400, 400, user_type="Member"), None, Action.SKIP, "not-a-guest"),
    ("userType missing", guest(400, 400, 400, user_type=None), None, Action.SKIP, "not-a-guest"),
    # exclusions
    ("excluded home domain", guest(200, 200, 200, mail="x@WoodgroveBank.com"), None, Action.SKIP, "excluded-by-domain"),
    (
        "excluded UPN pattern",
        guest(200, 200, 200, user_principal_name="Auditor_kpmg.com#EXT#@contoso.com"),
        None,
        Action.SKIP,
        "excluded-by-upn-pattern",
    ),
    (
        "new guest: created 13 d ago, pending past threshold? no: grace",
        guest(
            activity=False,
            external_user_state="PendingAcceptance",
            external_user_state_changed=ago(40),
            created=ago(13),
        ),
        None,
        Action.SKIP,
        "new-guest",
    ),
    (
        "new guest grace ends on day 14",
        guest(
            activity=False,
            external_user_state="PendingAcceptance",
            external_user_state_changed=ago(40),
            created=ago(14),
        ),
        None,
        Action.WARN,
        "invitation-not-redeemed",
    ),
    # warn -> disable -> delete with grace periods (boundaries included)
    ("warned 13 d ago", guest(200, 200, 200), memory(Stage.WARNED, 13), Action.KEEP, "in-warning-grace"),
    ("warned 14 d ago (boundary)", guest(200, 200, 200), memory(Stage.WARNED, 14), Action.DISABLE, "inactive"),
    (
        "disabled 29 d ago",
        guest(200, 200, 200, account_enabled=False),
        memory(Stage.DISABLED, 29, we_disabled=True),
        Action.KEEP,
        "in-disabled-grace",
    ),
    (
        "disabled 30 d ago (boundary)",
        guest(200, 200, 200, account_enabled=False),
        memory(Stage.DISABLED, 30, we_disabled=True),
        Action.DELETE,
        "inactive",
    ),
    # reactivation
    ("signed in while warned", guest(1, 200, 1), memory(Stage.WARNED, 5), Action.REACTIVATE, "active-again"),
    (
        "signed in (non-interactive) while disabled",
        guest(200, 0.5, 200, account_enabled=False),
        memory(Stage.DISABLED, 3, we_disabled=True),
        Action.REACTIVATE,
        "active-again",
    ),
    ("excluded while warned", guest(200, 200, 200), memory(Stage.WARNED, 5), Action.REACTIVATE, "excluded-by-group"),
    (
        "admin re-enabled what we disabled",
        guest(200, 200, 200, account_enabled=True),
        memory(Stage.DISABLED, 5, we_disabled=True),
        Action.REACTIVATE,
        "re-enabled-outside-guestwarden",
    ),
    (
        "restored from deleted by someone",
        guest(200, 200, 200, account_enabled=False),
        memory(Stage.DELETED, 5, we_disabled=True),
        Action.REACTIVATE,
        "restored-outside-guestwarden",
    ),
    # a restore restarts the inactivity clock
    ("restored 10 d ago, still no sign-in", guest(200, 200, 200), memory(Stage.RESTORED, 10), Action.KEEP, "active"),
    ("restored 90 d ago, still no sign-in", guest(200, 200, 200), memory(Stage.RESTORED, 90), Action.WARN, "inactive"),
]


@pytest.mark.parametrize(("user", "mem", "action", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_policy_table(user: DirectoryUser, mem: StageMemory | None, action: Action, reason: str) -> None:
    group = reason == "excluded-by-group"
    decision = decide(user, mem, NOW, POLICY, member_of_excluded_group=group)
    assert (decision.action, decision.reason) == (action, reason)


def test_excluded_group_member_is_skipped_whatever_its_activity() -> None:
    decision = decide(guest(500, 500, 500), None, NOW, POLICY, member_of_excluded_group=True)
    assert (decision.action, decision.reason) == (Action.SKIP, "excluded-by-group")


def test_reactivation_re_enables_only_what_we_disabled() -> None:
    ours = decide(guest(1, 1, 1, account_enabled=False), memory(Stage.DISABLED, 3, we_disabled=True), NOW, POLICY)
    theirs = decide(guest(1, 1, 1, account_enabled=False), memory(Stage.DISABLED, 3, we_disabled=False), NOW, POLICY)
    warned = decide(guest(1, 1, 1), memory(Stage.WARNED, 3), NOW, POLICY)
    assert (ours.action, ours.enable) == (Action.REACTIVATE, True)
    assert (theirs.action, theirs.enable) == (Action.REACTIVATE, False)
    assert (warned.action, warned.enable) == (Action.REACTIVATE, False)


def test_only_operator_reactivations_restart_the_clock() -> None:
    signed_in = decide(guest(1, 1, 1), memory(Stage.WARNED, 3), NOW, POLICY)
    re_enabled = decide(guest(200, 200, 200), memory(Stage.DISABLED, 3, we_disabled=True), NOW, POLICY)
    assert not signed_in.restart_clock
    assert re_enabled.restart_clock


def test_grace_periods_say_when_the_next_stage_is_due() -> None:
    warned = decide(guest(200, 200, 200), memory(Stage.WARNED, 4), NOW, POLICY)
    disabled = decide(
        guest(200, 200, 200, account_enabled=False), memory(Stage.DISABLED, 10, we_disabled=True), NOW, POLICY
    )
    assert warned.due == ago(4) + timedelta(days=14)
    assert disabled.due == ago(10) + timedelta(days=30)


def test_evidence_names_every_stamp_the_decision_used() -> None:
    decision = decide(guest(200, 120, None), None, NOW, POLICY)
    assert decision.evidence["lastSignIn"] == ago(200).isoformat()
    assert decision.evidence["lastNonInteractiveSignIn"] == ago(120).isoformat()
    assert decision.evidence["lastSuccessfulSignIn"] is None
    assert decision.evidence["inactiveSince"] == ago(120).isoformat()
    assert (decision.evidence["inactiveDays"], decision.evidence["thresholdDays"]) == (120, 90)
    assert decision.evidence["basis"] == "activity"


def test_ledger_scope_is_stable_within_an_episode_and_new_for_the_next() -> None:
    first = decide(guest(200, 200, 200), None, NOW, POLICY)
    rerun = decide(guest(200, 200, 200), None, NOW + timedelta(hours=3), POLICY)
    later_episode = decide(guest(100, 100, 100), None, NOW, POLICY)
    assert first.scope == rerun.scope
    assert first.scope != later_episode.scope
    disable = decide(guest(200, 200, 200), memory(Stage.WARNED, 20), NOW, POLICY)
    assert disable.scope == f"warned:{ago(20).isoformat()}"


@pytest.mark.parametrize("stamp_days_ago", [60, 5, 0.5])
def test_a_pending_invitation_sent_again_does_not_end_its_episode(stamp_days_ago: float) -> None:
    """The invitation was re-sent with the warning 6 days ago; whether Graph moved its stamp (to 5 days or half
    a day ago) or kept it (60 days), the guest is still in its warning grace, then disabled on time."""
    pending = guest(
        activity=False, external_user_state="PendingAcceptance", external_user_state_changed=ago(stamp_days_ago)
    )
    warned = memory(Stage.WARNED, 6)
    assert (decide(pending, warned, NOW, POLICY).action, decide(pending, warned, NOW, POLICY).reason) == (
        Action.KEEP,
        "in-warning-grace",
    )
    later = NOW + timedelta(days=POLICY.warn_grace_days)
    assert decide(pending, warned, later, POLICY).action is Action.DISABLE
    redeemed = guest(activity=False, external_user_state_changed=ago(0.5))  # accepted now: a new start
    assert decide(redeemed, warned, NOW, POLICY).action is Action.REACTIVATE
