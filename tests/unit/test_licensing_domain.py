"""decide_licensing: the table of cases an admin would check before trusting automatic licences."""

from __future__ import annotations

import pytest

from shared.domain.directory import DirectoryUser, SubscribedSku
from shared.domain.licensing import (
    AddToGroup,
    AssignSku,
    LicensingPolicy,
    NoSuchSku,
    Skip,
    SkipReason,
    decide_licensing,
    find_sku,
    usage_location_for,
)

SKU = SubscribedSku("sku-guest", "GUEST_ACCESS", enabled_units=10, consumed_units=3, capability_status="Enabled")
SKU_POLICY = LicensingPolicy(
    mode="sku",
    sku_part_number="GUEST_ACCESS",
    default_usage_location="US",
    usage_location_by_domain={"fabrikam.de": "DE"},
    excluded_domains=frozenset({"woodgrove.com"}),
)
GROUP_POLICY = LicensingPolicy(mode="group", group_id="grp-1", excluded_domains=frozenset({"woodgrove.com"}))


def guest(**props: object) -> DirectoryUser:
    base: dict[str, object] = {
        "id": "g1",
        "user_type": "Guest",
        "external_user_state": "Accepted",
        "mail": "ann@fabrikam.com",
        "account_enabled": True,
    }
    base.update(props)
    return DirectoryUser(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "policy", "expected"),
    [
        (None, SKU_POLICY, Skip(SkipReason.USER_NOT_FOUND, final=False)),
        (guest(user_type="Member"), SKU_POLICY, Skip(SkipReason.NOT_A_GUEST, final=False)),
        (
            guest(user_type="Member", user_principal_name="bob_fabrikam.com#EXT#@contoso.com"),
            SKU_POLICY,
            Skip(SkipReason.NOT_A_GUEST, final=False),
        ),
        (guest(external_user_state="PendingAcceptance"), SKU_POLICY, Skip(SkipReason.NOT_ACCEPTED, final=False)),
        (guest(external_user_state=None), SKU_POLICY, Skip(SkipReason.NOT_ACCEPTED, final=False)),
        (  # an invited guest whose state is null (pre-2018): nothing says it redeemed
            guest(external_user_state=None, creation_type="Invitation"),
            SKU_POLICY,
            Skip(SkipReason.NOT_ACCEPTED, final=False),
        ),
        (  # self-service sign-up: no invitation to redeem, externalUserState stays null; it joined
            guest(external_user_state=None, creation_type="SelfServiceSignUp"),
            SKU_POLICY,
            AssignSku("sku-guest", (), set_usage_location="US"),
        ),
        (guest(mail="eve@WoodGrove.com"), SKU_POLICY, Skip(SkipReason.EXCLUDED_DOMAIN, final=False)),
        (guest(account_enabled=False), SKU_POLICY, Skip(SkipReason.DISABLED, final=False)),
        (
            guest(assigned_sku_ids=frozenset({"sku-guest"})),
            SKU_POLICY,
            Skip(SkipReason.ALREADY_LICENSED, final=True),
        ),
        (guest(), SKU_POLICY, AssignSku("sku-guest", (), set_usage_location="US")),
        (guest(mail="jo@fabrikam.de"), SKU_POLICY, AssignSku("sku-guest", (), set_usage_location="DE")),
        (guest(usage_location="FR"), SKU_POLICY, AssignSku("sku-guest", (), set_usage_location=None)),
        (guest(), GROUP_POLICY, AddToGroup("grp-1")),
        (guest(mail="eve@woodgrove.com"), GROUP_POLICY, Skip(SkipReason.EXCLUDED_DOMAIN, final=False)),
    ],
)
def test_decide_licensing(user: DirectoryUser | None, policy: LicensingPolicy, expected: object) -> None:
    sku = SKU if policy.mode == "sku" else None
    assert decide_licensing(user, policy, sku) == expected


def test_existing_usage_location_is_never_overwritten() -> None:
    assert usage_location_for(guest(usage_location="JP", mail="jo@fabrikam.de"), SKU_POLICY) is None


def test_usage_location_from_the_ext_upn_when_there_is_no_mail() -> None:
    user = guest(mail=None, user_principal_name="jo_fabrikam.de#EXT#@contoso.onmicrosoft.com")
    assert usage_location_for(user, SKU_POLICY) == "DE"


def test_sku_lookup_by_part_number_names_what_exists() -> None:
    assert find_sku([SKU], "guest_access") is SKU
    with pytest.raises(NoSuchSku, match="GUEST_ACCESS"):
        find_sku([SKU], "E5")
