"""`python -m local.servicebus_broker --port 5672 --queue guest-accepted --queue risk-incidents`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from . import LocalServiceBusBroker


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.servicebus_broker",
        description="Local Azure Service Bus stand-in (AMQP 1.0) for the unchanged azure-servicebus SDK.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="TCP port; 0 picks a free one (default 5672)")
    parser.add_argument("--queue", action="append", required=True, metavar="NAME", help="declare a queue (repeatable)")
    parser.add_argument("--max-delivery-count", type=int, default=10, help="deliveries before dead-lettering")
    parser.add_argument("--lock-duration", type=float, default=30.0, metavar="S", help="peek-lock duration, s")
    parser.add_argument(
        "--duplicate-window", type=float, default=600.0, metavar="S", help="duplicate detection window, s"
    )
    parser.add_argument("--verbose", action="store_true", help="log link and management activity")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    broker = LocalServiceBusBroker(
        args.queue,
        host=args.host,
        port=args.port,
        max_delivery_count=args.max_delivery_count,
        lock_duration_s=args.lock_duration,
        duplicate_window_s=args.duplicate_window,
    ).start()
    try:
        print(f"servicebus-broker listening on {broker.connection_string}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        broker.stop()
        print("servicebus-broker stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
