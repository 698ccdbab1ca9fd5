"""requirements.txt (what Azure installs) is the lock of pyproject.toml's runtime dependencies (`make lock`).

No network: the lock is read as text and compared with the ranges pyproject.toml declares.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in requirements}


def locked() -> dict[str, tuple[Requirement, list[str]]]:
    """name -> (the pinned requirement, its hashes), from the pip requirements format uv writes."""
    logical: list[str] = []
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if logical and logical[-1].endswith("\\"):
            logical[-1] = logical[-1][:-1].rstrip() + " " + line
        elif line:
            logical.append(line)
    pins: dict[str, tuple[Requirement, list[str]]] = {}
    for line in logical:
        spec, *options = line.split(" --")
        hashes = [option.removeprefix("hash=") for option in options if option.startswith("hash=")]
        requirement = Requirement(spec.strip())
        pins[canonicalize_name(requirement.name)] = (requirement, hashes)
    return pins


def test_the_lock_says_how_to_regenerate_it() -> None:
    header = (ROOT / "requirements.txt").read_text().splitlines()[:3]
    assert any("make lock" in line for line in header), header


def test_every_runtime_dependency_is_pinned_inside_its_declared_range() -> None:
    pins = locked()
    missing = sorted(set(declared()) - set(pins))
    assert not missing, f"not in requirements.txt (run `make lock`): {missing}"
    for name, requirement in declared().items():
        pin, _ = pins[name]
        [only] = list(pin.specifier)
        assert only.operator == "==", f"{name}: {pin} is not an exact pin"
        assert requirement.specifier.contains(Version(only.version), prereleases=True), (
            f"{name}: locked {only.version} is outside pyproject's {requirement.specifier} (run `make lock`)"
        )


def test_every_pin_is_exact_and_hashed() -> None:
    pins = locked()
    assert pins
    for name, (pin, hashes) in pins.items():
        assert [s.operator for s in pin.specifier] == ["=="], f"{name}: {pin}"
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{name} has no sha256 hash"


def test_dev_requirements_add_tools_only() -> None:
    """Runtime dependencies are declared once, in pyproject.toml; the dev file is installed next to the lock."""
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    entries = [line for line in lines if line]
    assert not [line for line in entries if line.startswith("-r")], "a second -r would mix hashed and unhashed"
    names = {canonicalize_name(Requirement(line).name) for line in entries}
    assert not names & set(declared()), names & set(declared())
