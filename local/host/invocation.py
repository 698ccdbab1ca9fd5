"""Calling user functions the way the Python worker does: coroutines on the loop, plain functions in a pool."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .metadata import FunctionSpec

log = logging.getLogger("local.host")


@dataclass(frozen=True)
class FunctionStats:
    invocations: int = 0
    failures: int = 0


@dataclass(frozen=True)
class InvocationResult:
    ok: bool
    value: Any = None


class LocalContext:
    """What the worker passes as `context` when a function asks for it (a subset of azure.functions.Context)."""

    def __init__(self, function_name: str) -> None:
        self.invocation_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_directory = ""
        self.trace_context = None
        self.retry_context = None
        self.thread_local_storage = threading.local()


class Invoker:
    """Runs invocations, counts them, and lets tests wait for a count instead of sleeping."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._stats: dict[str, FunctionStats] = {}
        self._changed = asyncio.Condition()

    @property
    def stats(self) -> dict[str, FunctionStats]:
        return dict(self._stats)

    async def invoke(self, spec: FunctionSpec, trigger_value: Any) -> InvocationResult:
        """Call the function with its trigger argument; an exception is logged (type only) and counted."""
        kwargs: dict[str, Any] = {spec.arg_name: trigger_value}
        if _wants_context(spec):
            kwargs["context"] = LocalContext(spec.name)
        started = time.perf_counter()
        log.info("Executing '%s'", spec.name)
        try:
            if inspect.iscoroutinefunction(spec.user_function):
                value = await spec.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self._executor, functools.partial(spec.user_function, **kwargs))
        except Exception as error:
            elapsed = (time.perf_counter() - started) * 1000
            # The exception text may hold data from the trigger; the traceback goes to DEBUG only.
            log.error("Executed '%s' (Failed, %s, %.0f ms)", spec.name, type(error).__name__, elapsed)
            log.debug("'%s' raised", spec.name, exc_info=True)
            await self._count(spec.name, failed=True)
            return InvocationResult(ok=False)
        elapsed = (time.perf_counter() - started) * 1000
        log.info("Executed '%s' (Succeeded, %.0f ms)", spec.name, elapsed)
        await self._count(spec.name, failed=False)
        return InvocationResult(ok=True, value=value)

    async def _count(self, name: str, *, failed: bool) -> None:
        async with self._changed:
            current = self._stats.get(name, FunctionStats())
            self._stats[name] = FunctionStats(current.invocations + 1, current.failures + int(failed))
            self._changed.notify_all()

    async def wait_for(self, name: str, *, invocations: int, timeout_s: float) -> FunctionStats:
        """Wait until `name` has completed at least `invocations` invocations (success or failure)."""

        def reached() -> bool:
            return self._stats.get(name, FunctionStats()).invocations >= invocations

        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(reached)
        return self._stats[name]


def _wants_context(spec: FunctionSpec) -> bool:
    try:
        parameters: Mapping[str, inspect.Parameter] = inspect.signature(spec.user_function).parameters
    except (TypeError, ValueError):
        return False
    return "context" in parameters and spec.arg_name != "context"
