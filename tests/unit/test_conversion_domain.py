"""The pure rules of conversions and identity drift (shared.domain.conversion)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.conversion import (
    Converted,
    Drifted,
    DriftKind,
    GuestWatch,
    Remember,
    Unchanged,
    Untracked,
    identity_drift,
    review,
    sign_in_identities,
)
from shared.domain.directory import DirectoryUser, ObjectIdentity

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)
HOST = ObjectIdentity("userPrincipalName", "contoso.onmicrosoft.com", "g1_fabrikam.com#EXT#@contoso.onmicrosoft.com")
PARTNER = ObjectIdentity("federated", "ExternalAzureAD", None)
OTP = ObjectIdentity("federated", "mail", "g1@fabrikam.com")
MSA = ObjectIdentity("federated", "MicrosoftAccount", None)


def guest(*identities: ObjectIdentity, state: str | None = "Accepted", **props: object) -> DirectoryUser:
    return DirectoryUser(
        id="g1",
        user_type=str(props.pop("user_type", "Guest")),
        external_user_state=state,
        creation_type="Invitation",
        identities=identities,
        **props,  # type: ignore[arg-type]
    )


def baseline(*identities: ObjectIdentity, **kw: object) -> GuestWatch:
    return GuestWatch("Guest", EARLIER, identities=identities, baseline_at=EARLIER, **kw)  # type: ignore[arg-type]


# --- what counts as a sign-in identity -------------------------------------------------------------------------


def test_the_hosts_upn_entry_is_not_a_sign_in_identity_so_a_renamed_upn_is_no_drift() -> None:
    renamed = ObjectIdentity("userPrincipalName", "contoso.onmicrosoft.com", "renamed#EXT#@contoso.onmicrosoft.com")
    assert sign_in_identities(guest(PARTNER, HOST)) == (PARTNER,)
    assert review(guest(PARTNER, renamed), baseline(PARTNER), NOW, guest_state=False) == Unchanged()


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        ((PARTNER,), (OTP,), DriftKind.ISSUER_CHANGED),
        ((PARTNER,), (PARTNER, MSA), DriftKind.IDENTITY_ADDED),
        ((PARTNER,), (), DriftKind.IDENTITY_REMOVED),
        ((OTP,), (ObjectIdentity("federated", "mail", "someone.else@gmail.com"),), DriftKind.ASSIGNED_ID_CHANGED),
    ],
)
def test_each_kind_of_change_is_told_apart(
    before: tuple[ObjectIdentity, ...], after: tuple[ObjectIdentity, ...], kind: DriftKind
) -> None:
    drift = identity_drift(before, after)
    assert drift is not None and drift.kind is kind


def test_same_provider_in_other_spelling_or_an_id_appearing_is_no_drift() -> None:
    assert identity_drift((PARTNER,), (ObjectIdentity("Federated", "externalazuread", None),)) is None
    # what a Microsoft account entry's issuerAssignedId holds is undocumented: a value where there was none is not
    # a different person
    assert identity_drift((MSA,), (ObjectIdentity("federated", "MicrosoftAccount", "0003BFFD9B1A2C3D"),)) is None


# --- guests --------------------------------------------------------------------------------------------------


def test_a_pending_guest_is_remembered_without_a_baseline_and_gets_one_when_it_redeems() -> None:
    first = review(guest(HOST, state="PendingAcceptance"), None, EARLIER, guest_state=False)
    assert isinstance(first, Remember) and first.reason == "first-seen"
    assert first.watch.identities is None

    redeemed = review(guest(OTP, HOST), first.watch, NOW, guest_state=False)
    assert isinstance(redeemed, Remember) and redeemed.reason == "redeemed"
    assert redeemed.watch.identities == (OTP,) and redeemed.watch.baseline_at == NOW


def test_a_guest_first_seen_after_redemption_gets_its_baseline_at_once() -> None:
    first = review(guest(PARTNER, HOST), None, NOW, guest_state=False)
    assert isinstance(first, Remember) and first.watch.identities == (PARTNER,)


def test_another_provider_after_redemption_is_drift_scoped_by_the_baseline_and_the_new_identities() -> None:
    decision = review(guest(OTP, HOST), baseline(PARTNER), NOW, guest_state=False)
    assert isinstance(decision, Drifted)
    assert decision.drift.kind is DriftKind.ISSUER_CHANGED
    assert decision.scope.startswith(EARLIER.isoformat() + ":")
    assert decision.watch.identities == (OTP,) and decision.watch.baseline_at == NOW

    again = review(guest(OTP, HOST), decision.watch, NOW, guest_state=False)
    assert again == Unchanged()  # the new identity is the baseline now: flagged once
    back = review(guest(PARTNER, HOST), decision.watch, NOW + timedelta(days=1), guest_state=False)
    assert isinstance(back, Drifted) and back.scope != decision.scope  # a later change is a change of its own


def test_a_redemption_reset_is_remembered_then_a_different_redemption_is_flagged_with_it() -> None:
    pending = review(guest(HOST, state="PendingAcceptance"), baseline(PARTNER), NOW, guest_state=False)
    assert isinstance(pending, Remember) and pending.reason == "redemption-reset"
    assert pending.watch.identities == (PARTNER,) and pending.watch.reset_seen == NOW
    assert review(guest(HOST, state="PendingAcceptance"), pending.watch, NOW, guest_state=False) == Unchanged()

    later = NOW + timedelta(hours=1)
    decision = review(
        guest(ObjectIdentity("federated", "google.com", None), HOST), pending.watch, later, guest_state=False
    )
    assert isinstance(decision, Drifted)
    assert decision.previous.reset_seen == NOW and decision.watch.reset_seen is None


def test_redeeming_again_with_the_same_identity_ends_the_reset_without_a_flag() -> None:
    reset = baseline(PARTNER, reset_seen=NOW)
    decision = review(guest(PARTNER, HOST), reset, NOW, guest_state=False)
    assert isinstance(decision, Remember) and decision.reason == "redeemed-again"
    assert decision.watch.reset_seen is None


# --- conversions ---------------------------------------------------------------------------------------------


def test_a_guest_we_knew_that_is_a_member_now_is_a_conversion_once_per_stint() -> None:
    decision = review(guest(PARTNER, HOST, user_type="Member"), baseline(PARTNER), NOW, guest_state=False)
    assert isinstance(decision, Converted)
    assert decision.scope == f"guest-since:{EARLIER.isoformat()}"
    assert decision.watch.user_type == "Member" and decision.watch.since == NOW
    assert review(guest(PARTNER, user_type="Member"), decision.watch, NOW, guest_state=False) == Untracked("member")


def test_a_member_we_never_knew_as_a_guest_is_left_alone_unless_we_hold_guest_state_of_it() -> None:
    external_member = guest(PARTNER, HOST, user_type="Member")  # e.g. cross-tenant sync: external, userType Member
    assert review(external_member, None, NOW, guest_state=False) == Untracked("never-a-guest")
    decision = review(external_member, None, NOW, guest_state=True)
    assert isinstance(decision, Converted) and decision.scope == "guest-state" and decision.previous is None


def test_a_member_that_is_a_guest_again_starts_a_new_stint() -> None:
    member = GuestWatch("Member", EARLIER)
    decision = review(guest(PARTNER, HOST), member, NOW, guest_state=False)
    assert isinstance(decision, Remember) and decision.reason == "guest-again"
    assert decision.watch.user_type == "Guest" and decision.watch.since == NOW


def test_a_user_graph_does_not_know_changes_nothing() -> None:
    assert review(None, baseline(PARTNER), NOW, guest_state=True) == Untracked("user-not-found")


def test_the_record_survives_a_round_trip() -> None:
    watch = GuestWatch("Guest", EARLIER, identities=(OTP, PARTNER), baseline_at=NOW, reset_seen=NOW)
    assert GuestWatch.from_json(watch.to_json()) == watch
    assert GuestWatch.from_json(GuestWatch("Member", NOW).to_json()) == GuestWatch("Member", NOW)
