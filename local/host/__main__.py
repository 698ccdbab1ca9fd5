"""`python -m local.host`: run a FunctionApp like `func start` does, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from .metadata import load_app
from .runtime import LocalFunctionsHost
from .settings import (
    HostConfigError,
    export_to_environ,
    merged_settings,
    read_host_json,
    read_local_settings,
)

DEFAULT_PORT = 7071


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.host", description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attr of the FunctionApp")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 7071; 0 = any free port)")
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"))
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    parser.add_argument("--functions", nargs="+", default=None, help="serve only these functions")
    parser.add_argument(
        "--allow-unsupported", action="store_true", help="skip functions with unsupported bindings (warn)"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    local_settings = read_local_settings(args.settings)
    settings = merged_settings(local_settings, os.environ)
    # Before the import: the app's module-level code reads its settings from the environment, as in Azure.
    export_to_environ(settings)
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    port = args.port
    if port is None:
        port = int((local_settings.get("Host") or {}).get("LocalHttpPort", DEFAULT_PORT))
    host = LocalFunctionsHost(
        load_app(args.app),
        settings,
        port=port,
        host_json=read_host_json(args.host_json),
        functions=args.functions,
        allow_unsupported=args.allow_unsupported,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await host.start()
    try:
        print("Functions:", flush=True)
        for line in host.describe():
            print(line, flush=True)
        print("Host started. Press Ctrl+C to shut down.", flush=True)
        await stop.wait()
        logging.getLogger("local.host").info("Shutting down")
    finally:
        await host.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDKs are chatty at INFO (every AMQP frame); the host's own lines are what matter here.
    for noisy in ("azure", "uamqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(serve(args))
    except HostConfigError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
