"""Regenerate the generated parts of docs/ (`make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.permissions import permissions_markdown
from shared.settings import settings_markdown

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- settings:start[^>]*-->\n).*?(<!-- settings:end -->)", re.DOTALL)
PERMISSIONS_BLOCK = re.compile(r"(<!-- permissions:start[^>]*-->\n).*?(<!-- permissions:end -->)", re.DOTALL)


def render_configuration(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + settings_markdown() + m.group(2), text)


def render_permissions(text: str) -> str:
    """docs/permissions.md: the "Per flow" table from shared/permissions.py."""
    return PERMISSIONS_BLOCK.sub(lambda m: m.group(1) + permissions_markdown() + m.group(2), text)


def main() -> None:
    path = ROOT / "docs" / "configuration.md"
    path.write_text(render_configuration(path.read_text()))
    print(f"wrote {path.relative_to(ROOT)}")
    path = ROOT / "docs" / "permissions.md"
    path.write_text(render_permissions(path.read_text()))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
