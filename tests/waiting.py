"""Waiting on a condition, with a deadline: the one place tests poll (no fixed sleeps anywhere else in tests/).

Prefer an event when the code under test offers one (host.wait_for, broker.wait_for_timer_pass, an asyncio.Event
a fake sets). Poll here only for state another thread or process owns and announces no other way: the broker's
counters, a file a subprocess writes, a port a server opens. Each helper fails loudly at its deadline and says
what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.05
"""How often a condition is re-checked: short against every deadline here, long enough not to spin a core."""


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0, what: str = "the condition"
) -> None:
    """Return once `condition()` (sync or async) is true; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)


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
