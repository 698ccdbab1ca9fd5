"""local.settings.example.json is what a developer copies to run the app on the local world: it must start."""

from __future__ import annotations

import json
from pathlib import Path

import function_app
from local.host.metadata import index_app
from shared.settings import Feature, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "local.settings.example.json"


def values() -> dict[str, str]:
    settings: dict[str, str] = json.loads(EXAMPLE.read_text())["Values"]
    return settings


def test_every_binding_expression_of_the_app_is_set() -> None:
    indexed = index_app(function_app.build_app(), values())  # raises naming every missing %SETTING%
    assert {"graph_notifications", "process_guest_change", "stale_sweep"} <= set(indexed.functions)


def test_the_settings_are_valid_for_every_feature_and_keep_the_sweep_a_dry_run() -> None:
    settings = load_settings(values(), tuple(Feature))
    assert settings.stale.dry_run is True
    assert settings.graph.auth == "local-token"  # never a real tenant by accident
