"""`python -m local.graph_sim --tenant FILE --port N`: serve a fixture tenant in the foreground.

Prints exactly one line, `graph-sim listening on <base url>`, so a parent process can read the URL.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from local.graph_sim.clock import parse_dt
from local.graph_sim.server import GraphSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.graph_sim", description=__doc__)
    parser.add_argument("--tenant", default="local/fixtures/contoso.json", help="tenant fixture (JSON)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks a free one")
    parser.add_argument(
        "--now",
        type=parse_dt,
        default=None,
        help="the instant the tenant is rebased onto (ISO 8601, e.g. 2027-03-01T09:00:00Z; default: now)",
    )
    parser.add_argument("--frozen", action="store_true", help="the clock does not tick (it still moves when told)")
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = GraphSimulator.from_fixture(args.tenant, now=args.now, frozen=args.frozen).start(port=args.port)
    print(f"graph-sim listening on {sim.base_url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
