"""Destructive safety of the stale sweep over generated tenants: across every night of a guest's lifecycle
(warn, disable, delete), no Member, no excluded guest (group, domain, UPN pattern) and, in dry run, nobody at
all is disabled, deleted, revoked or mailed; a run over its cap acts on nobody, before its first action.
And statically: the sweep is the only code that builds a disable or a delete."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.directory import DirectoryUser, SignInActivity
from shared.domain.stale import StalePolicy
from shared.services.stale import StaleConfig, sweep_stale_guests
from tests.fixtures.hypothesis_profile import count_case
from tests.unit.fakes_stale import FakeStaleGraph
from tests.unit.test_stale_service import EXCLUDED_GROUP, REAL, START, Clock, make_deps

ROOT = Path(__file__).resolve().parents[2]
POLICY = StalePolicy(
    exclude_group_ids=frozenset({EXCLUDED_GROUP}),
    exclude_domains=frozenset({"woodgrovebank.com"}),
    exclude_upn_patterns=("svc-*",),
)
KINDS = ("guest", "member", "excluded-group", "excluded-domain", "excluded-upn")


@st.composite
def tenants(draw: st.DrawFn) -> tuple[list[DirectoryUser], set[str]]:
    """Users of every kind with any activity; returns them and the ids that must never be touched."""
    users: list[DirectoryUser] = []
    protected: set[str] = set()
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(KINDS))
        inactive = draw(st.none() | st.integers(0, 800))
        stamp = START - timedelta(days=inactive) if inactive is not None else None
        uid = f"{kind}-{index}"
        domain = "woodgrovebank.com" if kind == "excluded-domain" else "fabrikam.com"
        prefix = "svc-" if kind == "excluded-upn" else ""
        users.append(
            DirectoryUser(
                id=uid,
                display_name=uid,
                user_type="Member" if kind == "member" else "Guest",
                mail=f"{uid}@{domain}",
                user_principal_name=f"{prefix}{uid}_{domain}#EXT#@contoso.onmicrosoft.com",
                external_user_state=draw(st.sampled_from(["Accepted", "PendingAcceptance", None])),
                external_user_state_changed=START - timedelta(days=draw(st.integers(0, 900))),
                created=START - timedelta(days=draw(st.integers(0, 900))),
                account_enabled=draw(st.booleans()),
                sign_in_activity=SignInActivity(stamp, stamp, stamp) if stamp else None,
            )
        )
        if kind != "guest":
            protected.add(uid)
    return users, protected


def graph_for(users: list[DirectoryUser]) -> FakeStaleGraph:
    graph = FakeStaleGraph(users)
    graph.groups[EXCLUDED_GROUP] = {u.id for u in users if u.id.startswith("excluded-group")}
    return graph


async def nights(graph: FakeStaleGraph, config: StaleConfig) -> list[str]:
    """Run the sweep on the nights that move a guest through warn, disable and delete; the statuses."""
    clock = Clock()
    deps = make_deps(graph, clock, config, policy=POLICY)
    statuses = []
    for days in (0, 14, 30, 1):
        clock.advance(days)
        statuses.append((await sweep_stale_guests(deps)).status)
    return statuses


def touched(graph: FakeStaleGraph) -> set[str]:
    return {write.split()[1] for write in graph.writes}


@settings(max_examples=150)
@given(tenants())
def test_members_and_excluded_guests_are_never_touched(tenant: tuple[list[DirectoryUser], set[str]]) -> None:
    count_case("destructive: tenants swept for a whole lifecycle (real mode)")
    users, protected = tenant
    graph = graph_for(users)
    asyncio.run(nights(graph, REAL))
    assert not touched(graph) & protected, graph.writes
    assert not set(graph.deleted) & protected
    before = {u.id: u.account_enabled for u in users}
    assert all(graph.users[uid].account_enabled == before[uid] for uid in protected)
    mailed = {address for mail in graph.outbox for address in mail.to}
    assert not mailed & {u.mail for u in users if u.id in protected}


@settings(max_examples=150)
@given(tenants())
def test_dry_run_touches_and_mails_nobody(tenant: tuple[list[DirectoryUser], set[str]]) -> None:
    count_case("destructive: tenants swept for a whole lifecycle (dry run)")
    users, _ = tenant
    graph = graph_for(users)
    statuses = asyncio.run(nights(graph, replace(REAL, dry_run=True, notify_guest=True)))
    assert graph.writes == [] and graph.deleted == {} and graph.outbox == []
    assert set(statuses) <= {"dry-run", "aborted"}


@settings(max_examples=150)
@given(tenants(), st.integers(0, 3))
def test_a_run_over_its_cap_stops_before_its_first_action(
    tenant: tuple[list[DirectoryUser], set[str]], cap: int
) -> None:
    count_case("destructive: capped runs")
    users, _ = tenant
    graph = graph_for(users)
    plan = asyncio.run(sweep_stale_guests(make_deps(graph, Clock(), replace(REAL, max_actions=cap), policy=POLICY)))
    if plan.status != "applied":  # capped (or aborted): the plan is reported, nobody is acted on
        assert graph.writes == [] and graph.outbox == [] and graph.deleted == {}
    if plan.status == "capped":
        assert plan.acting > cap
    if plan.status == "applied":
        assert plan.acting <= cap
        assert len({w.split()[1] for w in graph.writes}) <= cap


def test_only_the_sweep_and_restore_build_a_disable_or_a_delete() -> None:
    """Every code path that can disable or delete a user goes through the sweep's policy and cap, or (a
    sponsor's "remove now") the attestation's dry run and daily cap (tests/unit/test_attestation.py)."""
    pattern = re.compile(r"BatchOps\.(disable|soft_delete)\(|\.soft_delete_user\(|set_account_enabled\(")
    users = {
        str(path.relative_to(ROOT))
        for folder in ("shared", "functions")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    }
    assert users <= {
        "shared/services/stale/execute.py",
        "shared/services/stale/restore.py",
        "shared/services/attestation.py",
        "shared/adapters/graph/gateway.py",
    }, users
