"""A local Azure Service Bus stand-in: an AMQP 1.0 broker that the unchanged azure-servicebus SDK talks to.

Like moto for AWS, it speaks the service's own wire protocol, so tests, demos and benchmarks exercise the
real client library. One proton reactor thread owns the sockets and the timers; the in-memory state is
shared with the introspection methods under one lock. See docs/local-servicebus.md for what is supported.

Time (lock expiry, scheduled messages, the duplicate-detection window) comes from an injectable clock, the wall
clock by default; a test hands in one it can advance (the Graph simulator's SimClock) and calls
wait_for_timer_pass() to see the broker act on the new time instead of sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from proton import Event, Handler
from proton.reactor import ApplicationEvent, Container, EventInjector

from ._handler import BrokerHandler
from ._state import BrokerState, Clock, QueueOptions, WallClock

__all__ = ["Clock", "LocalServiceBusBroker", "QueueOptions", "WallClock"]

log = logging.getLogger("local.servicebus_broker")


class _DropPeerHangups(logging.Filter):
    """The SDK closes its socket right after sending Close; proton logs the resulting EPIPE as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Couldn't send") and ("BrokenPipe" in text or "ConnectionReset" in text))


logging.getLogger("proton").addFilter(_DropPeerHangups())

TICK_S = 0.05
STOP_GRACE_S = 2.0


class _Ticker(Handler):
    """Drives scheduled-message activation and lock expiry from proton's timer heap."""

    def __init__(self, broker: LocalServiceBusBroker) -> None:
        super().__init__()
        self.broker = broker

    def on_timer_task(self, event: Event) -> None:
        broker = self.broker
        if broker._stopping:
            # Stop once every client has seen its connection close, or when the grace period runs out.
            if not broker._handler.connections or time.monotonic() > broker._stop_deadline:
                event.container.stop()
                return
        else:
            broker._handler.tick()
        event.container.schedule(TICK_S, self)


STAT_NAMES = (
    "sent",
    "duplicates",
    "scheduled",
    "delivered",
    "completed",
    "abandoned",
    "released",
    "lock_expired",
    "dead_lettered",
    "received_and_deleted",
    "cancelled",
)


class LocalServiceBusBroker:
    """Service Bus-compatible broker on 127.0.0.1, started in a background thread.

    >>> with LocalServiceBusBroker(["orders"]).start() as broker:
    ...     client = ServiceBusClient.from_connection_string(broker.connection_string)
    """

    def __init__(
        self,
        queues: Mapping[str, QueueOptions] | Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_delivery_count: int = 10,
        lock_duration_s: float = 30.0,
        duplicate_window_s: float = 600.0,
        clock: Clock | None = None,
    ) -> None:
        declared = dict(queues) if isinstance(queues, Mapping) else {name: QueueOptions() for name in queues}
        if not declared:
            raise ValueError("declare at least one queue")
        self.host = host
        self._requested_port = port
        self.port = 0
        self._state = BrokerState(
            declared,
            max_delivery_count=max_delivery_count,
            lock_duration_s=lock_duration_s,
            duplicate_window_s=duplicate_window_s,
            clock=clock,
        )
        self._handler = BrokerHandler(self._state)
        self._handler.on_stop = self._shutdown_on_reactor
        self._stop_deadline = 0.0
        self._container: Container | None = None
        self._injector: EventInjector | None = None
        self._acceptor: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=local;UseDevelopmentEmulator=true;"
        )

    def start(self) -> LocalServiceBusBroker:
        if self._thread is not None:
            raise RuntimeError("broker already started")
        container = Container(self._handler)
        container.container_id = "local-servicebus-broker"
        self._injector = EventInjector()
        container.selectable(self._injector)
        self._acceptor = container.listen(f"{self.host}:{self._requested_port}")
        self.port = int(self._acceptor._selectable._delegate.getsockname()[1])
        container.schedule(TICK_S, _Ticker(self))
        self._container = container
        self._thread = threading.Thread(target=self._run, name=f"servicebus-broker:{self.port}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._container is not None
        try:
            self._container.run()
        except Exception:
            log.exception("servicebus broker reactor failed")
        finally:
            self._close_listener()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listener, then wait for the reactor thread to end."""
        thread, injector = self._thread, self._injector
        if thread is None or injector is None or not thread.is_alive():
            self._close_listener()
            return
        injector.trigger(ApplicationEvent("broker_stop"))
        thread.join(timeout)
        if thread.is_alive():
            log.warning("servicebus broker thread did not stop within %.1fs", timeout)

    def restart(self, timeout: float = 5.0) -> LocalServiceBusBroker:
        """Drop every connection, then listen again on the same port with the same queues and messages.

        A Service Bus namespace keeps its messages across a restart or failover, so this one does too: what was
        available stays available, scheduled stays scheduled, the dead-letter queues and the duplicate-detection
        history are kept, and a message locked by a client that lost its connection is redelivered once its lock
        expires (its lock token is dead: settling it fails, as after a real connection loss).
        """
        port = self.port
        self.stop(timeout)
        self._thread = self._container = self._injector = self._acceptor = None
        self._stopping = False
        self._requested_port = port
        self._handler = BrokerHandler(self._state)
        self._handler.on_stop = self._shutdown_on_reactor
        return self.start()

    def _shutdown_on_reactor(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_deadline = time.monotonic() + STOP_GRACE_S
        assert self._container is not None and self._injector is not None
        self._acceptor.close()
        self._close_listener()
        for connection in list(self._handler.connections):
            try:
                connection.close()
            except Exception:
                log.debug("closing a connection failed", exc_info=True)
        self._injector.close()

    def _close_listener(self) -> None:
        acceptor = self._acceptor
        if acceptor is None:
            return
        sock = getattr(acceptor._selectable, "_delegate", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> LocalServiceBusBroker:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- introspection (tests, benchmarks) ------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._state.clock

    def wait_for_timer_pass(self, timeout: float = 5.0) -> None:
        """Block until a timer pass that started after this call has run (every TICK_S on the reactor thread).

        After advancing the clock, this is the moment the broker has acted on the new time: due scheduled messages
        are available and expired locks are abandoned (redelivered or dead-lettered)."""
        with self._state.timer_pass_done:
            # Passes run under the state lock, so none is half done here: the next one starts after this call.
            seen = self._state.timer_passes
            if not self._state.timer_pass_done.wait_for(lambda: self._state.timer_passes > seen, timeout):
                raise TimeoutError(f"no broker timer pass within {timeout:.1f} s (is the broker running?)")

    def queue_depth(self, name: str) -> int:
        """Active messages: available plus locked (not scheduled, not dead-lettered), like ActiveMessageCount."""
        with self._state.lock:
            entity = self._state.queue(name)
            return len(entity.available) + len(entity.locks)

    def queue_counts(self, name: str) -> dict[str, int]:
        with self._state.lock:
            entity = self._state.queue(name)
            dlq = entity.dead_letter
            return {
                "available": len(entity.available),
                "locked": len(entity.locks),
                "scheduled": len(entity.scheduled),
                "dead_lettered": (len(dlq.available) + len(dlq.locks)) if dlq else 0,
            }

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Messages in ``name``'s dead-letter queue (not removed): reason, description, body, ids."""
        with self._state.lock:
            dlq = self._state.queue(name).dead_letter
            if dlq is None:
                return []
            entries = sorted([*dlq.available, *(lock.entry for lock in dlq.locks.values())])
            return [
                {
                    "sequence_number": e.sequence_number,
                    "message_id": e.message.id,
                    "reason": e.dead_letter_reason,
                    "description": e.dead_letter_description,
                    "body": e.message.body,
                    "application_properties": dict(e.message.properties or {}),
                }
                for e in entries
            ]

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per queue: STAT_NAMES, each present (0 until it happens)."""
        with self._state.lock:
            return {e.name: {name: e.stats[name] for name in STAT_NAMES} for e in self._state.entities.values()}

    @property
    def queues(self) -> list[str]:
        return self._state.queue_names()
