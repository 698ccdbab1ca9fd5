"""The house's rules (docs/architecture.md), checked on the code itself.

- domain/ and ports/ import the standard library and the domain only: no SDK, no I/O library.
- services/ import domain, ports, other services and the pure permission table; tenacity is their one
  third-party library (retry policies are a use-case decision).
- importing any service module loads no Azure, Graph, HTTP or template library (measured in a fresh process).
- nothing in shared/ imports functions/, cli/ or local/.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
STDLIB = frozenset(sys.stdlib_module_names)
SDK_PREFIXES = ("azure", "msgraph", "msgraph_core", "kiota_", "httpx", "aiohttp", "jinja2")


def modules(package: str) -> list[Path]:
    return sorted(p for p in (SHARED / package).rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved to shared.*)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("shared.<relative>")
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def name_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", modules("domain") + modules("ports"), ids=name_of)
def test_domain_and_ports_import_only_the_standard_library_and_the_domain(path: Path) -> None:
    allowed_shared = ("shared.domain",) if "domain" in path.parts else ("shared.domain", "shared.ports")
    bad = sorted(
        name
        for name in imports(path)
        if top(name) not in STDLIB and not name.startswith(allowed_shared) and name != "__future__"
    )
    assert bad == [], f"{name_of(path)} imports {bad}"


SERVICE_IMPORTS = ("shared.domain", "shared.ports", "shared.services", "shared.permissions")
SERVICE_EXCEPTIONS = {
    # The doctor's use case is checking the settings themselves: it reads the Settings model (no I/O in it).
    "shared.services.doctor": ("shared.settings",),
}


@pytest.mark.parametrize("path", modules("services"), ids=name_of)
def test_services_import_only_domain_ports_and_services(path: Path) -> None:
    allowed = SERVICE_IMPORTS + SERVICE_EXCEPTIONS.get(name_of(path), ())
    bad = sorted(
        name
        for name in imports(path)
        if (name.startswith("shared") and not name.startswith(allowed))
        or (top(name) not in STDLIB and top(name) not in ("shared", "tenacity", "__future__"))
    )
    assert bad == [], f"{name_of(path)} imports {bad}"


@pytest.mark.parametrize("path", modules("services"), ids=name_of)
def test_importing_a_service_loads_no_sdk(path: Path) -> None:
    module = name_of(path)
    probe = (
        f"import json, sys\nimport {module}\n"
        f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules if n.startswith({SDK_PREFIXES!r})}})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [], f"import {module} loads {result.stdout.strip()}"


@pytest.mark.parametrize("path", sorted(SHARED.rglob("*.py")), ids=name_of)
def test_shared_never_imports_the_outer_layers(path: Path) -> None:
    bad = sorted(name for name in imports(path) if top(name) in ("functions", "cli", "local", "tests", "bench"))
    assert bad == [], f"{name_of(path)} imports {bad}"
