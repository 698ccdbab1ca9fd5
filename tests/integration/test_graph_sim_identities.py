"""`identities` through msgraph-sdk and the simulator: served only on $select (user.md), in Microsoft's shapes
before and after redemption (local/graph_sim/contract_identities.py), read by the gateway into the domain."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_identities import ISSUERS, SELECT_ONLY, provider_for
from shared.adapters.graph import GraphGateway
from shared.domain.directory import ObjectIdentity
from shared.domain.welcome import SignInPath, sign_in_path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
TENANT = json.loads(FIXTURE.read_text())
NAMED: dict[str, str] = TENANT["named"]

pytestmark = pytest.mark.timeout(60)


def test_the_contract_rows_cite_microsoft() -> None:
    assert set(SELECT_ONLY) == {"identities"} and "user.md" in SELECT_ONLY["identities"]
    assert {"ExternalAzureAD", "MicrosoftAccount", "mail", "google.com", "facebook.com"} == set(ISSUERS)
    assert all("user-properties.md" in source for source in ISSUERS.values())
    partners = ["fabrikam.com"]
    assert provider_for("a@Fabrikam.com", partners) == "ExternalAzureAD"
    assert provider_for("a@outlook.com", partners) == "MicrosoftAccount"
    assert provider_for("a@gmail.com", partners) == "mail"  # email one-time passcode is on by default


def test_identities_are_served_only_on_select(sim: GraphSimulator) -> None:
    token = httpx.post(sim.token_url, data={"grant_type": "client_credentials"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{sim.base_url}/users/{NAMED['msa-guest']}"
    assert "identities" not in httpx.get(url, headers=headers).json()  # not a default property
    assert "identities" in httpx.get(f"{url}?$select=id,identities", headers=headers).json()


async def test_each_kind_maps_to_its_path(sim: GraphSimulator, gateway: GraphGateway) -> None:
    plain = await gateway.get_user(NAMED["msa-guest"])
    assert plain is not None and plain.identities == ()  # not selected, not read
    msa = await gateway.get_user(NAMED["msa-guest"], with_identities=True)
    assert msa is not None and sign_in_path(msa) is SignInPath.MICROSOFT_ACCOUNT

    partner = await gateway.get_user(NAMED["accepted-unlicensed"], with_identities=True)
    assert partner is not None and sign_in_path(partner) is SignInPath.PARTNER_TENANT
    pending = await gateway.get_user(NAMED["pending-old"], with_identities=True)
    assert pending is not None and sign_in_path(pending) is SignInPath.HOST_ACCOUNT  # nothing federated yet

    invited = sim.invite_guest("zoe@gmail.com", "Zoe")
    sim.redeem_invitation(invited, via="google.com")
    google = await gateway.get_user(invited, with_identities=True)
    assert google is not None and sign_in_path(google) is SignInPath.GOOGLE
    otp_id = sim.invite_guest("yan@gmail.com", "Yan")
    sim.redeem_invitation(otp_id)
    otp = await gateway.get_user(otp_id, with_identities=True)
    assert otp is not None
    assert otp.identities[0] == ObjectIdentity("federated", "mail", "yan@gmail.com")
    assert otp.identities[1].sign_in_type == "userPrincipalName"
    assert otp.identities[1].issuer == "contoso.onmicrosoft.com"
