"""Contract table: the `identities` a B2B guest carries before and after it redeems its invitation, as Microsoft
documents them. Data: the fixture generator (local/fixtures/generate.py) and the simulator's `invite_guest` /
`redeem_invitation` build a user's `identities` from these rows, so guestwarden reads Microsoft's shapes.

Sources (the first in microsoftgraph/microsoft-graph-docs-contrib, the others in MicrosoftDocs/entra-docs):

- `identities` is an objectIdentity collection "Returned only on `$select`" (api-reference/v1.0/resources/user.md;
  api-reference/v1.0/resources/objectidentity.md: signInType, issuer, issuerAssignedId). The simulator serves
  it only when selected (it is not among USER_DEFAULT_PROPERTIES, local/graph_sim/resources/common.py).
- Before redemption "the Identities property ... is set to the host's organization domain"; after, it "is updated
  based on the user's identity provider": `ExternalAzureAD`, Microsoft account, `google.com`, `facebook.com`,
  `mail` (email one-time passcode), or an issuer URI for SAML/WS-Fed federation (docs/external-id/
  user-properties.md, "Invitation redemption" and "Identities").
- The Graph shape of a redeemed guest of another Entra tenant: a `federated` entry with issuer `ExternalAzureAD`
  and a null issuerAssignedId, next to the host's `userPrincipalName` entry (Microsoft's support wiki on
  converting external users, "Attributes Modified"). The Microsoft account issuer is spelled `MicrosoftAccount`
  in Graph (the portal shows "Microsoft Account"); an email one-time passcode entry carries the address as its
  issuerAssignedId. What a Microsoft account or Google entry's issuerAssignedId holds is not documented: null
  here, and guestwarden never relies on it.
- Email one-time passcode is on by default for every tenant (user-properties.md, the IMPORTANT note), so an
  address that is neither a partner tenant's nor a Microsoft account's redeems by one-time passcode unless Google
  federation is set up (`google.com`, only when a test asks for it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

Json = dict[str, Any]

USER_RESOURCE = "api-reference/v1.0/resources/user.md"
OBJECT_IDENTITY = "api-reference/v1.0/resources/objectidentity.md"
USER_PROPERTIES = "entra-docs docs/external-id/user-properties.md"

SELECT_ONLY: Final = {"identities": f"{USER_RESOURCE}; {OBJECT_IDENTITY}"}
"""Properties guestwarden selects that Graph returns only on `$select` (with the page that says so)."""

ISSUERS: Final = {
    "ExternalAzureAD": USER_PROPERTIES,
    "MicrosoftAccount": USER_PROPERTIES,
    "google.com": f"{USER_PROPERTIES}; {OBJECT_IDENTITY}",
    "facebook.com": f"{USER_PROPERTIES}; {OBJECT_IDENTITY}",
    "mail": f"{USER_PROPERTIES}; {OBJECT_IDENTITY}",
}
"""The federated issuers a redeemed B2B guest can carry (a SAML/WS-Fed guest carries its IdP's issuer URI)."""

MICROSOFT_ACCOUNT_DOMAINS: Final = ("outlook.com", "hotmail.com", "live.com", "msn.com")
"""Consumer domains whose addresses are Microsoft accounts in the sample tenants."""


def host_identity(upn: str, host_domain: str) -> Json:
    """The host tenant's entry every guest has (the only one before redemption)."""
    return {"signInType": "userPrincipalName", "issuer": host_domain, "issuerAssignedId": upn}


def provider_for(mail: str | None, partner_domains: Iterable[str]) -> str:
    """The issuer a guest with this address redeems with, by default (see the module docstring)."""
    domain = (mail or "").rpartition("@")[2].lower()
    if domain in {d.lower() for d in partner_domains}:
        return "ExternalAzureAD"
    if domain in MICROSOFT_ACCOUNT_DOMAINS:
        return "MicrosoftAccount"
    return "mail"


def federated_identity(issuer: str, mail: str | None) -> Json:
    """The entry redemption adds: email one-time passcode names the address; the others carry no id we model."""
    return {"signInType": "federated", "issuer": issuer, "issuerAssignedId": mail if issuer == "mail" else None}


def guest_identities(
    *, upn: str, host_domain: str, mail: str | None, redeemed: bool, issuer: str | None = None, partners: Iterable[str]
) -> list[Json]:
    """A guest's `identities`: the host's entry, preceded after redemption by the provider's federated one."""
    host = host_identity(upn, host_domain)
    if not redeemed:
        return [host]
    return [federated_identity(issuer or provider_for(mail, partners), mail), host]
