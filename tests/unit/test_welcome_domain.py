"""shared.domain.welcome: the sign-in path for each identity kind Microsoft documents, and who gets a welcome."""

from __future__ import annotations

import pytest

from shared.domain.directory import DirectoryUser, ObjectIdentity
from shared.domain.welcome import (
    SignInPath,
    SkipWelcome,
    WelcomeMail,
    WelcomeSkipReason,
    decide_welcome,
    host_domain,
    my_apps_url,
    sign_in_path,
)

TENANT = "2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"
UPN = "jane_gmail.com#EXT#@contoso.onmicrosoft.com"
HOST = ObjectIdentity("userPrincipalName", "contoso.onmicrosoft.com", UPN)


def federated(issuer: str, assigned: str | None = None) -> ObjectIdentity:
    return ObjectIdentity("federated", issuer, assigned)


def guest(*identities: ObjectIdentity, **props: object) -> DirectoryUser:
    base: dict[str, object] = {
        "id": "g1",
        "display_name": "Jane",
        "user_principal_name": UPN,
        "mail": "jane@gmail.com",
        "user_type": "Guest",
        "external_user_state": "Accepted",
        "creation_type": "Invitation",
        "account_enabled": True,
        "identities": identities,
    }
    base.update(props)
    return DirectoryUser(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("identities", "path"),
    [
        # entra-docs external-id/user-properties.md, "Identities"; the host's userPrincipalName entry stays alongside
        ((federated("MicrosoftAccount"), HOST), SignInPath.MICROSOFT_ACCOUNT),
        ((federated("mail", "jane@gmail.com"), HOST), SignInPath.EMAIL_OTP),
        ((federated("google.com", "1234567890"), HOST), SignInPath.GOOGLE),
        ((federated("facebook.com", "998877"), HOST), SignInPath.FACEBOOK),
        ((federated("ExternalAzureAD"), HOST), SignInPath.PARTNER_TENANT),
        ((federated("externalazuread"),), SignInPath.PARTNER_TENANT),  # issuers compared case-insensitively
        # objectidentity.md: for guests of another Entra organisation, "the domain of the federated organization"
        ((federated("fabrikam.com"), HOST), SignInPath.PARTNER_TENANT),
        # SAML/WS-Fed IdP federation: the issuer URI
        ((federated("http://sts.fabrikam.com/adfs/services/trust"), HOST), SignInPath.SAML_FEDERATION),
        ((federated("urn:federation:fabrikam"),), SignInPath.SAML_FEDERATION),
        # redeemed with credentials of this tenant: only the host's entry ("{host's domain}")
        ((HOST,), SignInPath.HOST_ACCOUNT),
        # unknown: nothing read, an issuer nobody documents, or federated entries that disagree
        ((), SignInPath.UNKNOWN),
        ((federated("phone", "+15550100"), HOST), SignInPath.UNKNOWN),
        ((federated("MicrosoftAccount"), federated("mail", "jane@gmail.com")), SignInPath.UNKNOWN),
        ((ObjectIdentity(None, None, None),), SignInPath.UNKNOWN),
    ],
)
def test_sign_in_path_follows_the_identities(identities: tuple[ObjectIdentity, ...], path: SignInPath) -> None:
    assert sign_in_path(guest(*identities)) is path


def test_two_entries_of_the_same_provider_are_one_path() -> None:
    user = guest(federated("mail", "jane@gmail.com"), federated("mail", "jane@work.example"), HOST)
    assert sign_in_path(user) is SignInPath.EMAIL_OTP


def test_the_link_is_tenant_specific_and_the_host_domain_comes_from_the_ext_upn() -> None:
    assert my_apps_url(TENANT) == f"https://myapps.microsoft.com/?tenantid={TENANT}"
    assert host_domain(guest()) == "contoso.onmicrosoft.com"
    assert host_domain(guest(user_principal_name="JANE_GMAIL.COM#ext#@Contoso.OnMicrosoft.com")) == (
        "contoso.onmicrosoft.com"
    )
    assert host_domain(guest(user_principal_name="jane@contoso.com")) is None
    assert host_domain(guest(user_principal_name=None)) is None


def test_an_otp_guest_is_told_the_address_it_signs_in_with() -> None:
    user = guest(federated("mail", "jane.otp@gmail.com"), HOST, mail="jane@gmail.com")
    decision = decide_welcome(user, TENANT)
    assert decision == WelcomeMail(
        recipient="jane@gmail.com",
        path=SignInPath.EMAIL_OTP,
        my_apps_url=f"https://myapps.microsoft.com/?tenantid={TENANT}",
        host_domain="contoso.onmicrosoft.com",
        sign_in_name="jane.otp@gmail.com",
        home_domain="gmail.com",
    )


def test_a_guest_without_mail_is_written_to_at_its_other_mails() -> None:
    decision = decide_welcome(guest(HOST, mail=None, other_mails=("", "jane@home.example")), TENANT)
    assert isinstance(decision, WelcomeMail)
    assert decision.recipient == "jane@home.example"
    assert decision.sign_in_name == "jane@home.example"


def test_self_service_sign_up_guest_is_welcomed() -> None:
    user = guest(federated("mail", "jane@gmail.com"), external_user_state=None, creation_type="SelfServiceSignUp")
    assert isinstance(decide_welcome(user, TENANT), WelcomeMail)


@pytest.mark.parametrize(
    ("user", "reason", "final"),
    [
        (None, WelcomeSkipReason.USER_NOT_FOUND, False),
        (guest(HOST, user_type="Member"), WelcomeSkipReason.NOT_A_GUEST, True),
        (guest(HOST, external_user_state="PendingAcceptance"), WelcomeSkipReason.NOT_JOINED, False),
        (guest(HOST, account_enabled=False), WelcomeSkipReason.DISABLED, True),
        (guest(HOST, mail=None, other_mails=()), WelcomeSkipReason.NO_ADDRESS, True),
        (guest(HOST, mail="not-an-address", other_mails=()), WelcomeSkipReason.NO_ADDRESS, True),
    ],
)
def test_who_is_not_welcomed(user: DirectoryUser | None, reason: WelcomeSkipReason, final: bool) -> None:
    assert decide_welcome(user, TENANT) == SkipWelcome(reason, final)
