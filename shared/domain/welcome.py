"""The welcome mail a newly licensed guest gets: which sign-in path fits its identity, and whether to mail at all.
Pure rules, no I/O.

Why a mail at all: a guest from a Gmail or other non-Microsoft address who types its address at
myapps.microsoft.com is told "We couldn't find an account with that username"; the fix is a link that names the
inviting tenant, or "Sign-in options > Sign in to an organization > <tenant domain>" (../shared/seeds/
004_ec3dba9e1ee55f0b.txt, step 7). Microsoft documents the tenant-specific links for the guests that need them:
email one-time passcode (entra-docs external-id/one-time-passcode.md), Google (google-federation.md) and SAML/WS-Fed
(direct-federation.md) guests must sign in through `https://myapps.microsoft.com/?tenantid=<tenant id>` (or
`https://myapps.microsoft.com/<verified domain>`); common endpoints without the tenant fail for them.

Which path: the user's `identities` (user.md, objectidentity.md). After redemption Entra adds a `federated`
entry whose issuer names the identity provider (entra-docs external-id/user-properties.md, "Identities"):

| issuer | path |
| --- | --- |
| `MicrosoftAccount` | Microsoft account (the portal shows "Microsoft Account") |
| `mail` | email one-time passcode |
| `google.com` / `facebook.com` | Google / Facebook federation |
| `ExternalAzureAD` | a work account of another Microsoft Entra tenant |
| a URI (`http(s)://`, `urn:`) | the partner's own SAML/WS-Fed identity provider |
| a bare domain | another Entra organisation (objectidentity.md: "the domain of the federated organization") |

(For guests of another Entra organisation user-properties.md shows `ExternalAzureAD` and objectidentity.md the
organisation's domain: both are read as a partner tenant.)

No federated entry at all: before redemption the only entry is the host's `userPrincipalName` one; a guest that
redeemed with credentials of this tenant keeps only that (user-properties.md, "{host's domain}"). Several
federated entries that disagree, or issuers nobody documents, give UNKNOWN: the mail then gives the one link that
works for every kind and no provider-specific steps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.domain.directory import DirectoryUser, ObjectIdentity

__all__ = [
    "MY_APPS",
    "SignInPath",
    "SkipWelcome",
    "WelcomeMail",
    "WelcomeSkipReason",
    "decide_welcome",
    "host_domain",
    "my_apps_url",
    "sign_in_path",
]

MY_APPS = "https://myapps.microsoft.com/"


class SignInPath(enum.StrEnum):
    """How a guest signs in to this tenant; the templates branch on the value."""

    MICROSOFT_ACCOUNT = "microsoft-account"
    EMAIL_OTP = "email-otp"
    GOOGLE = "google"
    FACEBOOK = "facebook"
    PARTNER_TENANT = "partner-tenant"
    """A work account of another Microsoft Entra organisation."""
    SAML_FEDERATION = "saml-federation"
    """The partner's own SAML/WS-Fed identity provider."""
    HOST_ACCOUNT = "host-account"
    """Credentials of this tenant (an internal account invited to B2B, or no federated identity recorded)."""
    UNKNOWN = "unknown"


_BY_ISSUER = {
    "microsoftaccount": SignInPath.MICROSOFT_ACCOUNT,
    "mail": SignInPath.EMAIL_OTP,
    "google.com": SignInPath.GOOGLE,
    "facebook.com": SignInPath.FACEBOOK,
    "externalazuread": SignInPath.PARTNER_TENANT,
}


def _federated_path(identity: ObjectIdentity) -> SignInPath:
    issuer = (identity.issuer or "").strip()
    known = _BY_ISSUER.get(issuer.lower())
    if known is not None:
        return known
    lowered = issuer.lower()
    if lowered.startswith(("http://", "https://", "urn:")):
        return SignInPath.SAML_FEDERATION
    labels = lowered.split(".")
    if len(labels) >= 2 and all(label and label.replace("-", "").isalnum() for label in labels):
        return SignInPath.PARTNER_TENANT  # objectidentity.md: "the domain of the federated organization"
    return SignInPath.UNKNOWN


def sign_in_path(user: DirectoryUser) -> SignInPath:
    """The path that fits the user's `identities` (the table in this module's docstring)."""
    federated = [i for i in user.identities if (i.sign_in_type or "").lower() == "federated"]
    if federated:
        paths = {_federated_path(identity) for identity in federated}
        return paths.pop() if len(paths) == 1 else SignInPath.UNKNOWN
    if any((i.sign_in_type or "").lower() == "userprincipalname" for i in user.identities):
        return SignInPath.HOST_ACCOUNT
    return SignInPath.UNKNOWN  # identities not read, or empty


def host_domain(user: DirectoryUser) -> str | None:
    """The inviting tenant's domain, as a guest's `name_domain#EXT#@<domain>` UPN carries it: what a guest types at
    "Sign in to an organization" (seed 004, step 7)."""
    upn = user.user_principal_name or ""
    marker = upn.upper().find("#EXT#@")
    if marker < 0:
        return None
    domain = upn[marker + len("#EXT#@") :].strip().lower()
    return domain or None


def my_apps_url(tenant_id: str) -> str:
    """The tenant-specific My Apps link (one-time-passcode.md, google-federation.md, direct-federation.md)."""
    return f"{MY_APPS}?tenantid={tenant_id}"


class WelcomeSkipReason(enum.StrEnum):
    USER_NOT_FOUND = "user-not-found"
    NOT_A_GUEST = "not-a-guest"
    NOT_JOINED = "not-joined"
    DISABLED = "account-disabled"
    NO_ADDRESS = "no-mail-address"


@dataclass(frozen=True, slots=True)
class SkipWelcome:
    reason: WelcomeSkipReason
    final: bool
    """True: record the welcome as settled (never mailed); False: leave it open for a later change."""


@dataclass(frozen=True, slots=True)
class WelcomeMail:
    """What the welcome mail says, decided from the user: the template turns it into words."""

    recipient: str
    path: SignInPath
    my_apps_url: str
    host_domain: str | None
    """What to type at "Sign in to an organization", when the UPN tells it."""
    sign_in_name: str
    """The address the guest signs in with: the one-time-passcode identity's address, else the mail address."""
    home_domain: str | None


def _recipient(user: DirectoryUser) -> str | None:
    for address in (user.mail, *user.other_mails):
        if address and "@" in address:
            return address
    return None


def decide_welcome(user: DirectoryUser | None, tenant_id: str) -> WelcomeMail | SkipWelcome:
    """Whether the just-licensed `user` gets a welcome mail, and what it says."""
    if user is None:
        return SkipWelcome(WelcomeSkipReason.USER_NOT_FOUND, final=False)
    if not user.is_guest:
        return SkipWelcome(WelcomeSkipReason.NOT_A_GUEST, final=True)
    if not user.has_joined:
        return SkipWelcome(WelcomeSkipReason.NOT_JOINED, final=False)
    if user.account_enabled is False:
        return SkipWelcome(WelcomeSkipReason.DISABLED, final=True)
    recipient = _recipient(user)
    if recipient is None:
        return SkipWelcome(WelcomeSkipReason.NO_ADDRESS, final=True)
    path = sign_in_path(user)
    otp = next(
        (
            i.issuer_assigned_id
            for i in user.identities
            if (i.issuer or "").lower() == "mail" and i.issuer_assigned_id and "@" in i.issuer_assigned_id
        ),
        None,
    )
    return WelcomeMail(
        recipient=recipient,
        path=path,
        my_apps_url=my_apps_url(tenant_id),
        host_domain=host_domain(user),
        sign_in_name=otp or recipient,
        home_domain=user.home_domain,
    )
