"""The pacer that keeps the gateway inside Graph's quotas: at most `limit` starts in any window, on a fake clock."""

from __future__ import annotations

import pytest

from shared.adapters.graph.pacing import Pacer, pacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_at_most_limit_starts_in_any_window() -> None:
    t = FakeTime()
    pace = Pacer(10, 60.0, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(25):
        await pace.acquire()
        starts.append(t.now)
    assert t.slept == [60.0, 60.0]  # the 11th and 21st wait for the first of their window to leave it
    for i, start in enumerate(starts):
        in_window = [s for s in starts if start - 60.0 < s <= start]
        assert len(in_window) <= 10, i
    assert starts[-1] - starts[0] == 120.0  # and no longer than that: the floor the quota allows


async def test_requests_spread_out_in_time_wait_for_nothing() -> None:
    t = FakeTime()
    pace = Pacer(5, 10.0, clock=t.clock, sleep=t.sleep)
    for _ in range(20):
        await pace.acquire()
        t.now += 2.0  # one every 2 s: exactly the quota
    assert t.slept == [] and pace.waited_s == 0


async def test_several_at_once_wait_for_room_for_all() -> None:
    t = FakeTime()
    pace = Pacer(10, 60.0, clock=t.clock, sleep=t.sleep)
    await pace.acquire(8)
    t.now += 5
    await pace.acquire(4)  # needs two of the first eight to leave
    assert t.slept == [55.0]
    with pytest.raises(ValueError, match="can never fit"):
        await pace.acquire(11)


def test_zero_means_no_pacing() -> None:
    assert pacer(0, 60.0) is None
    made = pacer(5, 10.0)
    assert made is not None and (made.limit, made.window_s, made.margin_s) == (5, 10.0, 0.2)
