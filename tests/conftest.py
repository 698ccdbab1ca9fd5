"""Test-wide plumbing.

Every module in tests/fixtures/ is a pytest plugin (graph simulator, broker, Azurite, ...): each part of the
local world owns its fixtures in its own module, and they are all available to every test.
"""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
