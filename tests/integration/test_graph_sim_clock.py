"""The local world on any date: a fixture's dates are relative to its own `now`, and the simulator rebases the
whole tenant onto the moment it starts (or the instant it is given), on a clock that ticks with real time."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.clock import SimClock, iso_z, parse_dt, rebase_tenant

STARTS = [
    datetime(2026, 11, 23, 9, 0, tzinfo=UTC),  # the sample fixture's own `now`: nothing moves
    datetime(2031, 2, 28, 23, 30, 15, tzinfo=UTC),
    datetime(2019, 6, 1, 0, 0, tzinfo=UTC),  # before the fixture was written
]


def dated_values(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every non-empty `...DateTime` string in a document, in document order."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key.endswith("DateTime") and value:
                yield f"{path}/{key}", value
            else:
                yield from dated_values(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from dated_values(item, f"{path}[{index}]")


@pytest.mark.parametrize("start", STARTS, ids=lambda s: s.date().isoformat())
def test_every_date_keeps_its_distance_to_now(contoso_tenant: dict[str, Any], start: datetime) -> None:
    anchor = parse_dt(contoso_tenant["tenant"]["now"])
    moved = copy.deepcopy(contoso_tenant)
    rebase_tenant(moved, start)
    before, after = list(dated_values(contoso_tenant)), list(dated_values(moved))
    assert len(after) == len(before) > 1000  # users, activity, sign-ins, deleted users, role assignments
    for (path, old), (same_path, new) in zip(before, after, strict=True):
        assert path == same_path
        assert parse_dt(new) - start == parse_dt(old) - anchor, path
        assert new.endswith("Z") and ("." in new) == ("." in old), path  # Graph's style is kept
    assert moved["tenant"]["now"] == iso_z(start)


@pytest.mark.parametrize("start", STARTS, ids=lambda s: s.date().isoformat())
def test_the_named_cases_mean_the_same_on_any_date(contoso_tenant: dict[str, Any], start: datetime) -> None:
    sim = GraphSimulator(copy.deepcopy(contoso_tenant), now=start, frozen=True)
    assert sim.clock.now() == start
    accepted = parse_dt(sim.user("accepted-unlicensed")["externalUserStateChangeDateTime"])
    assert start - accepted == timedelta(hours=1)  # "accepted 1 h ago"
    stale = parse_dt(sim.user("stale-all")["signInActivity"]["lastSignInDateTime"])
    assert start - stale == timedelta(days=200)
    risky = [s for s in sim.store.signins if s["userId"] == sim.named("risk-53011")]
    assert [start - parse_dt(s["createdDateTime"]) for s in risky] == [
        timedelta(hours=2),
        timedelta(hours=2, minutes=12),
    ]
    assert contoso_tenant["tenant"]["now"] == "2026-11-23T09:00:00Z"  # the caller's document is not touched


def test_a_started_simulator_serves_the_rebased_tenant_at_todays_date(contoso_tenant: dict[str, Any]) -> None:
    before = datetime.now(UTC)
    with GraphSimulator(copy.deepcopy(contoso_tenant)).start() as sim:
        after = datetime.now(UTC)
        assert before <= sim.clock.start <= after
        uid = sim.named("pending-recent")
        with httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.token()}"}) as client:
            user = client.get(f"/users/{uid}", params={"$select": "createdDateTime"}).json()
        invited = parse_dt(user["createdDateTime"])
        # "invited 3 days ago", to the second (Graph's precision)
        assert timedelta(0) <= sim.clock.start - invited - timedelta(days=3) < timedelta(seconds=1)


def test_a_tenant_without_now_is_served_as_written() -> None:
    tenant: dict[str, Any] = {
        "tenant": {"id": "t"},
        "users": [{"id": "u", "userType": "Guest", "createdDateTime": "2020-01-01T00:00:00Z"}],
    }
    assert rebase_tenant(tenant, datetime(2030, 1, 1, tzinfo=UTC)) == timedelta(0)
    assert tenant["users"][0]["createdDateTime"] == "2020-01-01T00:00:00Z"


def test_the_clock_ticks_with_real_time_and_jumps_when_told() -> None:
    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    elapsed = [0.0]
    clock = SimClock(start, ticks=lambda: elapsed[0])
    elapsed[0] = 2.5  # real time passes
    assert clock.now() == start + timedelta(seconds=2.5)  # ticking
    jumped = clock.advance(timedelta(days=14))
    assert jumped - start >= timedelta(days=14) and clock.now() >= jumped
    clock.set(start - timedelta(days=1))  # back in time too
    assert start - timedelta(days=1) <= clock.now() < start
    assert clock.reset() == start + timedelta(seconds=2.5)  # every jump undone, still ticking
    frozen = clock.freeze()
    assert clock.frozen and clock.now() == frozen
    assert clock.advance(timedelta(hours=1)) == frozen + timedelta(hours=1) == clock.now()
    clock.reset()
    assert not clock.frozen
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2030, 1, 1))


def test_the_sample_fixture_regenerates_byte_identical() -> None:
    """Deterministic on any day: the generator's dates hang off its `--now`, never off the wall clock."""
    import io

    from local.fixtures.generate import DEFAULT_NOW, DEFAULT_SEED, write_tenant

    committed = (Path(__file__).resolve().parents[2] / "local" / "fixtures" / "contoso.json").read_text()
    buffer = io.StringIO()
    write_tenant(buffer, guests=300, seed=DEFAULT_SEED, now=parse_dt(DEFAULT_NOW))
    assert buffer.getvalue() == committed
