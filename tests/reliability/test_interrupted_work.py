"""A worker killed between an action and its audit entry: the redelivered message finds the work done, does not
repeat it, and the audit log still records it exactly once (found in the fault suite: the licence was in the
tenant, its audit entry was missing). The audit entry now travels with the claim's completion (one state
write), so the gap left is between Graph's answer and that write."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from shared.ports.state import AuditEntry, Claim, JSONInput
from shared.services.licensing import license_guest
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes import FakeGraph
from tests.unit.test_licensing_service import NOW, accepted, make_deps, sku


class DiesOnAudit(MemoryStateStore):
    """The process dies (its task is cancelled) when it is about to write the audit entry of `action`: the
    completion that carries it, or a plain append."""

    def __init__(self, action: str) -> None:
        super().__init__(clock=lambda: NOW)
        self.action: str | None = action

    def _dies(self, entry: AuditEntry | None) -> None:
        if entry is not None and entry.action == self.action:
            self.action = None
            raise asyncio.CancelledError

    async def complete(self, claim: Claim, outcome: JSONInput, *, audit: AuditEntry | None = None) -> Claim:
        self._dies(audit)
        return await super().complete(claim, outcome, audit=audit)

    async def append(self, entry: AuditEntry) -> Any:
        self._dies(entry)
        return await super().append(entry)


async def test_licence_given_before_a_kill_is_audited_once_and_not_given_again() -> None:
    graph = FakeGraph([accepted("g1", usage_location="US")], [sku()])
    state = DiesOnAudit("assign-license")
    deps = make_deps(graph, state=state)
    with pytest.raises(asyncio.CancelledError):
        await license_guest("g1", deps)
    assert graph.count("assign_license") == 1  # Graph took it; the audit entry was never written

    redelivered = await license_guest("g1", deps)
    again = await license_guest("g1", deps)

    assert (redelivered.status, again.status) == ("skipped", "already-done")
    assert graph.count("assign_license") == 1
    entries = [(e.action, e.outcome) async for e in state.query(NOW.replace(year=2000))]
    assert entries == [("assign-license", "recovered")]


async def test_a_kill_right_after_the_completion_leaves_the_licence_audited_once() -> None:
    graph = FakeGraph([accepted("g1", usage_location="US")], [sku()])
    state = MemoryStateStore(clock=lambda: NOW)
    deps = make_deps(graph, state=state)

    def killed() -> None:
        state.crash_after_ledger_write = None
        raise asyncio.CancelledError

    state.crash_after_ledger_write = killed
    with pytest.raises(asyncio.CancelledError):
        await license_guest("g1", deps)
    assert (await license_guest("g1", deps)).status == "already-done"
    entries = [(e.action, e.outcome) async for e in state.query(NOW.replace(year=2000))]
    assert entries == [("assign-license", "done")] and graph.count("assign_license") == 1


async def test_a_guest_licensed_by_someone_else_is_not_claimed_as_ours() -> None:
    graph = FakeGraph([accepted("g1", usage_location="US", assigned_sku_ids=frozenset({"sku-g"}))], [sku()])
    deps = make_deps(graph)
    assert (await license_guest("g1", deps)).status == "skipped"
    assert [e async for e in deps.state.query(NOW.replace(year=2000))] == []


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> Any:
        return self.now

    async def sleep(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


async def test_a_lease_left_by_a_dead_worker_delays_the_work_but_never_dead_letters_it() -> None:
    """Each held delivery waits (bounded) instead of failing at once, so the queue's 10 deliveries outlast the
    dead worker's 300 s lease: the guest is licensed, not dead-lettered (found in the fault suite)."""
    from shared.services.licensing import LEASE_SECONDS, RetryLater

    clock = Clock()
    state = MemoryStateStore(clock=clock)
    graph = FakeGraph([accepted("g1", usage_location="US")], [sku()])
    deps = replace(make_deps(graph, state=state), clock=clock, sleep=clock.sleep)
    dead = await state.claim("license", "g1", deps.policy.target, owner="dead-worker", lease_seconds=LEASE_SECONDS)
    assert dead.won
    deliveries = 0
    outcome = None
    while outcome is None:
        deliveries += 1
        assert deliveries <= 10, "the message would have been dead-lettered"
        try:
            outcome = await license_guest("g1", deps)
        except RetryLater:
            continue
    assert outcome.status == "licensed" and graph.count("assign_license") == 1
    assert deliveries > 1  # it did wait for the lease
