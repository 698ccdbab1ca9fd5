"""App settings and host.json for the local host, read the way the Functions host reads them.

Core Tools copies local.settings.json `Values` into the environment without overriding variables that are
already set, so the environment wins; binding properties may name a setting as `%NAME%`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

_EXPRESSION = re.compile(r"%([^%\s]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


class HostConfigError(Exception):
    """The app, its bindings or its settings cannot be served as configured; the message says what to fix."""


def read_local_settings(path: Path) -> dict[str, Any]:
    """The parsed local.settings.json (an empty document when the file does not exist)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HostConfigError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise HostConfigError(f"{path} must hold a JSON object")
    return document


def merged_settings(local_settings: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """`Values` from local.settings.json overlaid by the environment (the environment wins, as in Core Tools)."""
    values = local_settings.get("Values") or {}
    if not isinstance(values, dict):
        raise HostConfigError("local.settings.json: 'Values' must be an object of strings")
    merged = {str(name): "" if value is None else str(value) for name, value in values.items()}
    merged.update(environ)
    return merged


def export_to_environ(settings: Mapping[str, str]) -> None:
    """Make the settings visible to the app's own code, which reads os.environ like it does in Azure."""
    for name, value in settings.items():
        os.environ.setdefault(name, value)


def read_host_json(path: Path) -> dict[str, Any]:
    """host.json as a dict (empty when absent)."""
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HostConfigError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise HostConfigError(f"{path} must hold a JSON object")
    return document


def resolve_expression(value: str, settings: Mapping[str, str], *, where: str) -> str:
    """Replace every `%NAME%` with the app setting NAME; a missing setting is an error naming it and `where`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostConfigError(
                f"{where} refers to app setting '{name}', which is not set "
                "(add it to local.settings.json 'Values' or to the environment)"
            )
        return settings[name]

    return _EXPRESSION.sub(substitute, value)


def parse_timespan(text: str) -> timedelta:
    """A .NET TimeSpan string as used in host.json and timer schedules: `[d.]hh:mm:ss[.fff]`."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise HostConfigError(f"'{text}' is not a TimeSpan (expected [d.]hh:mm:ss)")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0")[:6].ljust(6, "0")),
    )


def is_timespan(text: str) -> bool:
    return bool(_TIMESPAN.match(text.strip()))


@dataclass(frozen=True)
class HostOptions:
    """The host.json knobs the local host honours."""

    route_prefix: str = "api"
    max_concurrent_calls: int = 16
    auto_complete_messages: bool = True
    max_auto_lock_renewal: timedelta = timedelta(minutes=5)
    functions: tuple[str, ...] | None = None

    @classmethod
    def from_host_json(cls, document: Mapping[str, Any]) -> HostOptions:
        extensions = document.get("extensions") or {}
        http = extensions.get("http") or {}
        service_bus = extensions.get("serviceBus") or {}
        # Extension v4 nested the pump options; v5 flattened them. Accept both.
        handler_options = service_bus.get("messageHandlerOptions") or {}
        concurrency = service_bus.get("maxConcurrentCalls", handler_options.get("maxConcurrentCalls", 16))
        auto_complete = service_bus.get("autoCompleteMessages", handler_options.get("autoComplete", True))
        renewal = service_bus.get("maxAutoLockRenewalDuration", handler_options.get("maxAutoRenewDuration", "00:05:00"))
        functions = document.get("functions")
        try:
            max_calls = int(concurrency)
        except (TypeError, ValueError) as error:
            raise HostConfigError("host.json: extensions.serviceBus.maxConcurrentCalls must be an integer") from error
        if max_calls < 1:
            raise HostConfigError("host.json: extensions.serviceBus.maxConcurrentCalls must be at least 1")
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            max_concurrent_calls=max_calls,
            auto_complete_messages=bool(auto_complete),
            max_auto_lock_renewal=parse_timespan(str(renewal)),
            functions=tuple(str(name) for name in functions) if isinstance(functions, list) else None,
        )
