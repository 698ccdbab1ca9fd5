"""Waiting on a condition, with a deadline: the one place tests poll (no fixed sleeps anywhere else in tests/).

Prefer an event when the code under test offers one (host.wait_for, broker.wait_for_timer_pass, an asyncio.Event
a fake sets). Poll here only for state another thread or process owns and announces no other way: the broker's
counters, a file a subprocess writes, a port a server opens. Each helper fails loudly at its deadline and says
what it waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from local.world import POLL_S
from local.world import eventually as world_eventually


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0, what: str = "the condition"
) -> None:
    """Return once `condition()` (sync or async) is true; AssertionError naming `what` after `timeout_s`."""
    if not await world_eventually(condition, timeout_s):
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def eventually_sync(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Blocking variant for threads and subprocesses: True once `condition()` holds, False at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


async def give_way() -> None:
    """Let other tasks run, as a real I/O await would (fakes use it); no time passes."""
    await asyncio.sleep(0)
