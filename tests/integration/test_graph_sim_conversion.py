"""The simulator's conversion and identity helpers, read through msgraph-sdk and the gateway the way the
conversion review reads them (shared.domain.conversion): a redemption reset then another identity is drift; an
admin's userType change and an external-to-internal conversion are conversions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local.graph_sim import GraphSimulator
from shared.adapters.graph import GraphGateway
from shared.domain.conversion import Converted, Drifted, DriftKind, Remember, review

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "local" / "fixtures" / "contoso.json"
NAMED: dict[str, str] = json.loads(FIXTURE.read_text())["named"]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(60)


async def test_a_reset_and_a_redemption_with_another_identity_is_drift(
    sim: GraphSimulator, gateway: GraphGateway
) -> None:
    guest = NAMED["accepted-licensed"]  # a partner-tenant guest (ExternalAzureAD)
    first = review(await gateway.get_user(guest, with_identities=True), None, NOW, guest_state=False)
    assert isinstance(first, Remember) and first.watch.identities

    sim.reset_redemption(guest)
    pending = await gateway.get_user(guest, with_identities=True)
    assert pending is not None and pending.external_user_state == "PendingAcceptance"
    reset = review(pending, first.watch, NOW, guest_state=False)
    assert isinstance(reset, Remember) and reset.watch.reset_seen == NOW

    sim.redeem_invitation(guest, via="google.com")
    later = NOW + timedelta(hours=1)
    drift = review(await gateway.get_user(guest, with_identities=True), reset.watch, later, guest_state=False)
    assert isinstance(drift, Drifted) and drift.drift.kind is DriftKind.ISSUER_CHANGED
    assert [i.issuer for i in drift.drift.after] == ["google.com"]

    sim.change_identity(guest, "mail", "someone@else.example")
    again = review(await gateway.get_user(guest, with_identities=True), drift.watch, later, guest_state=False)
    assert isinstance(again, Drifted) and [i.issuer_assigned_id for i in again.drift.after] == ["someone@else.example"]


async def test_both_kinds_of_conversion_read_as_members(sim: GraphSimulator, gateway: GraphGateway) -> None:
    admin_made = NAMED["accepted-licensed"]
    watch = review(await gateway.get_user(admin_made, with_identities=True), None, NOW, guest_state=False)
    assert isinstance(watch, Remember)
    sim.convert_to_member(admin_made)
    member = await gateway.get_user(admin_made, with_identities=True)
    assert member is not None and member.user_type == "Member"
    assert member.identities[0].issuer == "ExternalAzureAD"  # still external
    assert isinstance(review(member, watch.watch, NOW, guest_state=False), Converted)

    internal = NAMED["accepted-unlicensed"]
    watch = review(await gateway.get_user(internal, with_identities=True), None, NOW, guest_state=False)
    assert isinstance(watch, Remember)
    sim.convert_to_member(internal, internal_upn="anna@contoso.onmicrosoft.com")
    member = await gateway.get_user(internal, with_identities=True)
    assert member is not None and member.user_principal_name == "anna@contoso.onmicrosoft.com"
    assert [(i.sign_in_type, i.issuer) for i in member.identities] == [("userPrincipalName", "contoso.onmicrosoft.com")]
    assert isinstance(review(member, watch.watch, NOW, guest_state=False), Converted)
