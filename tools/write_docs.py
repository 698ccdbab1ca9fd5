"""Regenerate the generated parts of docs/ (`make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import settings_markdown

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- settings:start[^>]*-->\n).*?(<!-- settings:end -->)", re.DOTALL)


def render_configuration(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + settings_markdown() + m.group(2), text)


def main() -> None:
    path = ROOT / "docs" / "configuration.md"
    path.write_text(render_configuration(path.read_text()))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
