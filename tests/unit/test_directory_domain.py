"""Pure rules of the directory model: who is a guest, last activity, home domain, seats, inventory rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.directory import DirectoryContact, DirectoryUser, SignInActivity, SubscribedSku
from shared.domain.inventory import guest_row

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 6, 1, tzinfo=UTC)
T2 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        (SignInActivity(), None),
        (SignInActivity(last_sign_in=T0), T0),
        # interactive is old but an app signed in recently: active (the classic script bug)
        (SignInActivity(last_sign_in=T0, last_non_interactive_sign_in=T2), T2),
        (SignInActivity(last_sign_in=T1, last_non_interactive_sign_in=T0, last_successful_sign_in=T2), T2),
        (SignInActivity(last_successful_sign_in=T1), T1),
    ],
)
def test_last_activity_is_the_latest_of_every_sign_in_kind(activity: SignInActivity, expected: datetime) -> None:
    assert activity.latest == expected


def test_only_user_type_makes_a_guest() -> None:
    member_ext = DirectoryUser(id="1", user_type="Member", user_principal_name="bob_fabrikam.com#EXT#@contoso.com")
    guest = DirectoryUser(id="2", user_type="Guest", user_principal_name="ann@contoso.com")
    assert not member_ext.is_guest
    assert guest.is_guest
    assert not DirectoryUser(id="3").is_guest


@pytest.mark.parametrize(
    ("mail", "upn", "domain"),
    [
        ("Ann@Fabrikam.COM", None, "fabrikam.com"),
        (None, "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com", "fabrikam.com"),
        (None, "first_last_tailspin.io#EXT#@contoso.onmicrosoft.com", "tailspin.io"),
        (None, "ann@contoso.com", None),
    ],
)
def test_home_domain(mail: str | None, upn: str | None, domain: str | None) -> None:
    assert DirectoryUser(id="x", mail=mail, user_principal_name=upn).home_domain == domain


def test_free_seats_never_negative() -> None:
    assert SubscribedSku("s", "GUEST", enabled_units=10, consumed_units=7, capability_status="Enabled").free_units == 3
    assert SubscribedSku("s", "GUEST", enabled_units=5, consumed_units=7, capability_status="Enabled").free_units == 0


def test_inventory_row_names_skus_and_sponsors() -> None:
    user = DirectoryUser(
        id="g1",
        display_name="Ann",
        mail="ann@fabrikam.com",
        user_type="Guest",
        external_user_state="Accepted",
        account_enabled=True,
        assigned_sku_ids=frozenset({"sku-1", "sku-unknown"}),
        sign_in_activity=SignInActivity(last_sign_in=T0, last_non_interactive_sign_in=T1),
    )
    row = guest_row(user, {"sku-1": "GUEST_PASS"}, [DirectoryContact(id="s1", display_name="Adele")])
    assert row.licenses == ("GUEST_PASS", "sku-unknown")
    assert row.last_activity == T1
    assert row.sponsors == ("Adele",)
    assert row.as_json()["last_activity"] == T1.isoformat()
    pending = guest_row(DirectoryUser(id="g2", user_type="Guest", external_user_state="PendingAcceptance"), {})
    assert pending.state == "PendingAcceptance" and pending.last_activity is None and pending.sponsors == ()
