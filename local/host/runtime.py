"""LocalFunctionsHost: one process serving a v2-model FunctionApp's HTTP, timer and Service Bus triggers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any

from azure.functions.timer import TimerRequest

from .http_server import KEY_SETTING, HttpTriggerServer, methods_label
from .invocation import FunctionStats, Invoker
from .metadata import (
    FunctionSpec,
    HttpTriggerSpec,
    ServiceBusTriggerSpec,
    TimerTriggerSpec,
    UnsupportedBinding,
    index_app,
)
from .servicebus import QueuePump, ServiceBusConnection, manual_function_message
from .settings import HostConfigError, HostOptions
from .timers import Clock, Schedule, SettableClock, SystemClock

log = logging.getLogger("local.host")

MAX_OCCURRENCES_PER_ADVANCE = 10_000
PAST_DUE_TOLERANCE_S = 1.0


class LocalFunctionsHost:
    """Serves an azure.functions.FunctionApp on this machine.

    Reads the app's functions once at construction (so configuration errors surface before anything
    listens). With `clock=None` timers follow real time; with a clock, timers fire only through
    `fire_timer()` and `advance_clock()`, so tests never wait for a cron tick.
    """

    def __init__(
        self,
        app: Any,
        settings: Mapping[str, str],
        *,
        port: int = 0,
        clock: Clock | None = None,
        host_json: Mapping[str, Any] | None = None,
        functions: Iterable[str] | None = None,
        allow_unsupported: bool = False,
        shutdown_timeout: float = 30.0,
        receive_wait_s: float = 0.5,
    ) -> None:
        self._settings = dict(settings)
        self._options = HostOptions.from_host_json(host_json or {})
        only = functions if functions is not None else self._options.functions
        indexed = index_app(app, self._settings, only=only, allow_unsupported=allow_unsupported)
        for item in indexed.skipped:
            log.warning("Skipping function %s", item)
        self._functions = indexed.functions
        self.skipped: tuple[UnsupportedBinding, ...] = indexed.skipped
        self._connections = {
            spec.name: ServiceBusConnection.from_settings(spec.name, spec.trigger.connection, self._settings)
            for spec in self._functions.values()
            if isinstance(spec.trigger, ServiceBusTriggerSpec)
        }
        self._port = port
        self._real_time = clock is None
        self._clock: Clock = clock or SystemClock()
        self._shutdown_timeout = shutdown_timeout
        self._receive_wait_s = receive_wait_s
        self._executor: ThreadPoolExecutor | None = None
        self._invoker: Invoker | None = None
        self._http: HttpTriggerServer | None = None
        self._pumps: list[QueuePump] = []
        self._timer_loops: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._timer_cursor: datetime | None = None
        self._started = False
        self._stopping = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("host already started")
        self._started = True
        threads = self._settings.get("PYTHON_THREADPOOL_THREAD_COUNT")
        self._executor = ThreadPoolExecutor(
            max_workers=int(threads) if threads else None, thread_name_prefix="local-host-worker"
        )
        self._invoker = Invoker(self._executor)
        key = self._settings.get(KEY_SETTING) or None
        if key is None and any(
            isinstance(s.trigger, HttpTriggerSpec) and s.trigger.auth_level != "anonymous"
            for s in self._functions.values()
        ):
            log.info("%s is not set: function keys are not checked (Azure checks them)", KEY_SETTING)
        self._http = HttpTriggerServer(
            self._functions.values(),
            self._invoker.invoke,
            route_prefix=self._options.route_prefix,
            function_key=key,
            admin_invoke=self._admin_invoke,
        )
        try:
            await self._http.start(self._port)
            for spec in self._functions.values():
                if isinstance(spec.trigger, ServiceBusTriggerSpec):
                    pump = QueuePump(
                        spec,
                        self._connections[spec.name],
                        self._invoker.invoke,
                        max_concurrent_calls=self._options.max_concurrent_calls,
                        auto_complete=self._options.auto_complete_messages,
                        max_lock_renewal=self._options.max_auto_lock_renewal,
                        receive_wait_s=self._receive_wait_s,
                    )
                    self._pumps.append(pump)
                    await pump.start()
        except BaseException:
            await self.stop()
            raise
        self._timer_cursor = self._clock.now()
        for spec, timer in self._timers():
            if timer.run_on_startup:
                self._track(self._invoke_timer(spec, past_due=False))
            if self._real_time:
                self._timer_loops.append(asyncio.create_task(self._timer_loop(spec), name=f"timer:{spec.name}"))
        log.info("Host started with %d function(s)", len(self._functions))

    async def stop(self) -> None:
        """Stop taking work, let in-flight invocations finish (up to shutdown_timeout), release everything."""
        self._stopping.set()
        await asyncio.gather(*self._timer_loops, return_exceptions=True)
        self._timer_loops.clear()
        await asyncio.gather(*(pump.stop(self._shutdown_timeout) for pump in self._pumps))
        self._pumps.clear()
        if self._http is not None:
            await self._http.stop()
            self._http = None
        await self.idle(timeout_s=self._shutdown_timeout)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True)

    async def kill(self) -> None:
        """Stop like a killed worker process: invocations in flight are cancelled where they stand, their queue
        messages are neither completed nor abandoned (the broker redelivers them when their locks expire), and
        nothing is waited for. Start a new host on the same settings (and port) to model the restart."""
        self._shutdown_timeout = 0.0
        await self.stop()

    async def __aenter__(self) -> LocalFunctionsHost:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- what tests and the CLI look at ---------------------------------------------------------------------

    @property
    def functions(self) -> Mapping[str, FunctionSpec]:
        return MappingProxyType(self._functions)

    @property
    def port(self) -> int:
        if self._http is None or self._http.port is None:
            raise RuntimeError("host not started")
        return self._http.port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats(self) -> dict[str, FunctionStats]:
        counted = self._invoker.stats if self._invoker else {}
        return {name: counted.get(name, FunctionStats()) for name in self._functions}

    def describe(self) -> list[str]:
        """One line per function, like Core Tools prints at startup."""
        lines: list[str] = []
        routes = {r.spec.name: r for r in self._http.routes} if self._http else {}
        for name, spec in self._functions.items():
            if isinstance(spec.trigger, HttpTriggerSpec) and self._http is not None:
                lines.append(f"  {name}: [{methods_label(spec.trigger)}] {self._http.url_for(routes[name])}")
            else:
                lines.append(f"  {name}: {spec.trigger_type}")
        return lines

    async def wait_for(self, name: str, *, invocations: int, timeout_s: float = 10.0) -> FunctionStats:
        """Wait until function `name` has completed `invocations` invocations in total."""
        self._require(name)
        assert self._invoker is not None
        return await self._invoker.wait_for(name, invocations=invocations, timeout_s=timeout_s)

    async def idle(self, timeout_s: float | None = None) -> None:
        """Wait for timer invocations started in the background (runOnStartup, real-time ticks)."""
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
            if pending:
                log.warning("%d invocation(s) still running", len(pending))

    # -- timers ----------------------------------------------------------------------------------------------

    async def fire_timer(self, name: str, *, past_due: bool = False) -> bool:
        """Invoke a timer function now (like Core Tools' admin endpoint); True if it succeeded."""
        spec = self._require(name)
        if not isinstance(spec.trigger, TimerTriggerSpec):
            raise ValueError(f"function '{name}' is not timer-triggered")
        return await self._invoke_timer(spec, past_due=past_due)

    async def advance_clock(self, to: datetime) -> list[tuple[str, datetime]]:
        """Fire every timer occurrence in (last advance, `to`], in time order; returns what fired.

        A clock that can be set (ManualClock, the simulator's clock) is moved to each occurrence before its
        invocation, and to `to` at the end.
        """
        if self._real_time:
            raise RuntimeError("advance_clock() needs a host built with a clock (e.g. ManualClock)")
        if self._timer_cursor is None:
            raise RuntimeError("host not started")
        if to < self._timer_cursor:
            raise ValueError(f"cannot move the clock back from {self._timer_cursor} to {to}")
        due: list[tuple[datetime, str]] = []
        for spec, timer in self._timers():
            schedule = Schedule(timer.schedule)
            due.extend(
                (when, spec.name)
                for when in schedule.between(self._timer_cursor, to, limit=MAX_OCCURRENCES_PER_ADVANCE)
            )
        due.sort()
        fired: list[tuple[str, datetime]] = []
        for when, name in due:
            self._set_clock(when)
            self._timer_cursor = when
            await self._invoke_timer(self._functions[name], past_due=False)
            fired.append((name, when))
        self._set_clock(to)
        self._timer_cursor = to
        return fired

    def _set_clock(self, when: datetime) -> None:
        if isinstance(self._clock, SettableClock):
            self._clock.set(when)

    def _timers(self) -> list[tuple[FunctionSpec, TimerTriggerSpec]]:
        return [(s, s.trigger) for s in self._functions.values() if isinstance(s.trigger, TimerTriggerSpec)]

    async def _invoke_timer(self, spec: FunctionSpec, *, past_due: bool) -> bool:
        assert self._invoker is not None
        result = await self._invoker.invoke(spec, TimerRequest(past_due=past_due))
        return result.ok

    async def _timer_loop(self, spec: FunctionSpec) -> None:
        assert isinstance(spec.trigger, TimerTriggerSpec)
        schedule = Schedule(spec.trigger.schedule)
        last = self._clock.now()
        while not self._stopping.is_set():
            due = schedule.next_after(last)
            delay = (due - self._clock.now()).total_seconds()
            if delay > 0:
                # Waking early (monotonic vs wall clock) just goes round again for the same occurrence.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            # Shielded: cancelling the loop (e.g. the host task) never cancels an invocation that has begun.
            await asyncio.shield(self._track(self._invoke_timer(spec, past_due=-delay > PAST_DUE_TOLERANCE_S)))
            # Occurrences missed while the function ran are skipped, as the Functions host does.
            last = max(due, self._clock.now())

    def _track(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    # -- helpers ---------------------------------------------------------------------------------------------

    def _require(self, name: str) -> FunctionSpec:
        try:
            return self._functions[name]
        except KeyError:
            raise KeyError(f"no function named '{name}' (have: {', '.join(sorted(self._functions))})") from None

    async def _admin_invoke(self, name: str, body: bytes) -> bool:
        spec = self._functions.get(name)
        if spec is None or isinstance(spec.trigger, HttpTriggerSpec):
            return False
        if isinstance(spec.trigger, TimerTriggerSpec):
            self._track(self._invoke_timer(spec, past_due=False))
        else:
            assert self._invoker is not None
            self._track(self._invoker.invoke(spec, manual_function_message(_admin_input(body))))
        return True


def _admin_input(body: bytes) -> bytes:
    """Core Tools takes `{"input": "..."}`; the input becomes the message body."""
    if not body.strip():
        return b""
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError('body must be JSON like {"input": "..."}') from error
    value = document.get("input", "") if isinstance(document, dict) else ""
    return value.encode("utf-8") if isinstance(value, str) else json.dumps(value).encode("utf-8")


__all__ = ["HostConfigError", "LocalFunctionsHost"]
