"""A local Azure Functions host for v2-model Python apps (see docs/local-host.md).

    async with LocalFunctionsHost(app, settings, port=0, clock=ManualClock(start)) as host:
        ... host.http_url, await host.advance_clock(to=...), host.stats ...

`python -m local.host --app function_app:app` runs it like `func start`.
"""

from .invocation import FunctionStats
from .metadata import FunctionSpec, UnsupportedBinding, UnsupportedBindingsError, load_app
from .runtime import LocalFunctionsHost
from .settings import HostConfigError
from .timers import Clock, ManualClock, SystemClock

__all__ = [
    "Clock",
    "FunctionSpec",
    "FunctionStats",
    "HostConfigError",
    "LocalFunctionsHost",
    "ManualClock",
    "SystemClock",
    "UnsupportedBinding",
    "UnsupportedBindingsError",
    "load_app",
]
