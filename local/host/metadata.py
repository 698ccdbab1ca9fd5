"""The functions of a v2-model app, read from the same metadata the Azure host indexes.

`FunctionApp.get_functions()` yields each function's name, its function.json (the bindings) and the user
callable. This module turns that into typed trigger specs, resolves `%SETTING%` expressions, and lists the
bindings this host cannot serve so it can refuse to start instead of silently ignoring them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from .settings import HostConfigError, is_timespan, resolve_expression

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")

# Properties that hold names or literal templates rather than app-setting expressions.
_NOT_EXPRESSIONS = frozenset({"name", "type", "direction", "route", "methods", "authLevel"})


@dataclass(frozen=True)
class HttpTriggerSpec:
    route: str
    methods: tuple[str, ...] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"


@dataclass(frozen=True)
class TimerTriggerSpec:
    schedule: str
    run_on_startup: bool


@dataclass(frozen=True)
class ServiceBusTriggerSpec:
    queue_name: str
    connection: str  # the *name* of the connection setting (prefix), as in function.json


TriggerSpec = HttpTriggerSpec | TimerTriggerSpec | ServiceBusTriggerSpec


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: its resolved bindings, its trigger, and the user callable."""

    name: str
    trigger_type: str
    arg_name: str
    trigger: TriggerSpec
    bindings: tuple[Mapping[str, Any], ...]
    user_function: Callable[..., Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class UnsupportedBinding:
    function: str
    binding_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.function}: {self.binding_type} ({self.reason})"


class UnsupportedBindingsError(HostConfigError):
    def __init__(self, unsupported: Iterable[UnsupportedBinding]) -> None:
        self.unsupported = tuple(unsupported)
        listing = "\n".join(f"  - {item}" for item in self.unsupported)
        super().__init__(
            "the local host cannot serve these bindings (use --allow-unsupported / allow_unsupported=True "
            f"to skip the functions that use them):\n{listing}"
        )


@dataclass(frozen=True)
class IndexedApp:
    functions: dict[str, FunctionSpec]
    skipped: tuple[UnsupportedBinding, ...]


def load_app(reference: str) -> Any:
    """Import `module:attr` (attr defaults to `app`) and return the FunctionApp object."""
    module_name, _, attr = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise HostConfigError(f"cannot import app module '{module_name}': {error}") from error
    attr = attr or "app"
    try:
        return getattr(module, attr)
    except AttributeError as error:
        raise HostConfigError(f"module '{module_name}' has no attribute '{attr}'") from error


def index_app(
    app: Any,
    settings: Mapping[str, str],
    *,
    only: Iterable[str] | None = None,
    allow_unsupported: bool = False,
) -> IndexedApp:
    """Read the app's functions once; raise on unsupported bindings or missing settings, naming them all."""
    if not hasattr(app, "get_functions"):
        raise HostConfigError(f"{app!r} is not an azure.functions.FunctionApp (it has no get_functions())")
    try:
        functions = app.get_functions()
    except ValueError as error:
        raise HostConfigError(
            f"app.get_functions() failed: {error}. It may be called only once per FunctionApp: "
            "give each host a freshly built app"
        ) from error
    wanted = set(only) if only is not None else None
    specs: dict[str, FunctionSpec] = {}
    unsupported: list[UnsupportedBinding] = []
    problems: list[str] = []
    for function in functions:
        name = function.get_function_name()
        if wanted is not None and name not in wanted:
            continue
        document = json.loads(function.get_function_json())
        bindings: list[dict[str, Any]] = list(document.get("bindings") or [])
        trouble = _unsupported_bindings(name, bindings)
        if trouble:
            unsupported.extend(trouble)
            continue
        try:
            resolved = tuple(_resolve_binding(name, binding, settings) for binding in bindings)
            specs[name] = _function_spec(name, resolved, function.get_user_function())
        except HostConfigError as error:
            problems.append(str(error))
    if wanted is not None:
        problems.extend(f"function '{name}' (asked for) is not in the app" for name in sorted(wanted - set(specs)))
    if unsupported and not allow_unsupported:
        raise UnsupportedBindingsError(unsupported)
    if problems:
        raise HostConfigError("cannot start the local host:\n" + "\n".join(f"  - {p}" for p in problems))
    return IndexedApp(functions=specs, skipped=tuple(unsupported))


def _unsupported_bindings(name: str, bindings: list[dict[str, Any]]) -> list[UnsupportedBinding]:
    found: list[UnsupportedBinding] = []
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if not triggers:
        return [UnsupportedBinding(name, "(none)", "function has no trigger")]
    trigger_type = str(triggers[0].get("type"))
    for binding in bindings:
        kind = str(binding.get("type", "?"))
        direction = str(binding.get("direction", "")).upper()
        if kind in ("httpTrigger", "timerTrigger"):
            continue
        if kind == "serviceBusTrigger":
            if "queueName" not in binding:
                found.append(UnsupportedBinding(name, kind, "topic subscriptions are not served, only queues"))
            elif binding.get("isSessionsEnabled"):
                found.append(UnsupportedBinding(name, kind, "session-enabled queues are not served"))
            elif str(binding.get("cardinality", "one")).lower() == "many":
                found.append(UnsupportedBinding(name, kind, "batch (cardinality many) is not served"))
            continue
        if kind == "http" and direction == "OUT" and binding.get("name") == "$return":
            if trigger_type != "httpTrigger":
                found.append(UnsupportedBinding(name, kind, "http output without an http trigger"))
            continue
        reason = f"{direction.lower() or 'unknown'} binding not served by the local host"
        found.append(UnsupportedBinding(name, kind, reason))
    return found


def _resolve_binding(function: str, binding: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    resolved = dict(binding)
    for key, value in binding.items():
        if isinstance(value, str) and key not in _NOT_EXPRESSIONS:
            where = f"function '{function}' binding {binding.get('type')} property '{key}'"
            resolved[key] = resolve_expression(value, settings, where=where)
    return resolved


def _function_spec(name: str, bindings: tuple[dict[str, Any], ...], user_function: Callable[..., Any]) -> FunctionSpec:
    trigger = next(b for b in bindings if str(b.get("type", "")).endswith("Trigger"))
    kind = str(trigger["type"])
    spec: TriggerSpec
    if kind == "httpTrigger":
        methods = trigger.get("methods")
        spec = HttpTriggerSpec(
            route=str(trigger.get("route") or name).strip("/"),
            methods=tuple(str(m).upper() for m in methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "function").lower(),
        )
    elif kind == "timerTrigger":
        schedule = str(trigger.get("schedule") or "")
        _validate_schedule(name, schedule)
        spec = TimerTriggerSpec(schedule=schedule, run_on_startup=bool(trigger.get("runOnStartup", False)))
    else:
        spec = ServiceBusTriggerSpec(queue_name=str(trigger["queueName"]), connection=str(trigger["connection"]))
    return FunctionSpec(
        name=name,
        trigger_type=kind,
        arg_name=str(trigger["name"]),
        trigger=spec,
        bindings=bindings,
        user_function=user_function,
    )


def _validate_schedule(name: str, schedule: str) -> None:
    if is_timespan(schedule):
        return
    fields = schedule.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(schedule, second_at_beginning=len(fields) == 6):
        raise HostConfigError(
            f"function '{name}': timer schedule '{schedule}' is not a six-field NCRONTAB expression "
            "({second} {minute} {hour} {day} {month} {day-of-week}) or a TimeSpan (hh:mm:ss)"
        )
