"""The settings table of docs/configuration.md, generated from the models (`make docs`; a test keeps it current)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings.core import REQUIREMENTS, _is_secret, setting_fields


@dataclass(frozen=True)
class SettingDoc:
    """One row of docs/configuration.md."""

    name: str
    default: str
    description: str
    secret: bool
    """A secret: a Key Vault reference in Azure (never echoed in errors or logs)."""
    needed_by: str = ""
    """The features that cannot run without it (and when)."""


def _needed_by(name: str) -> str:
    needs: list[str] = []
    always = {r.feature for r in REQUIREMENTS if name in r.names and r.when is None}
    for requirement in REQUIREMENTS:
        if name in requirement.names and (requirement.when is None or requirement.feature not in always):
            alone = (
                ""
                if len(requirement.names) == 1
                else " (or " + ", ".join(n for n in requirement.names if n != name) + ")"
            )
            when = f" when {requirement.when}" if requirement.when else ""
            entry = f"{requirement.feature}{when}{alone}"
            if entry not in needs:
                needs.append(entry)
    return "; ".join(needs)


def settings_table() -> list[SettingDoc]:
    """The documented settings, straight from the models (docs/configuration.md is checked against it)."""
    rows: list[SettingDoc] = []
    for field in setting_fields():
        assert field.alias is not None
        default = field.default
        shown = "" if default is None or default in ((), {}, frozenset()) else str(default)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        secret = _is_secret(field) and extra.get("key_vault", True) is not False
        rows.append(SettingDoc(field.alias, shown, field.description or "", secret, _needed_by(field.alias)))
    return rows


def settings_markdown() -> str:
    """The settings table of docs/configuration.md (`make docs` writes it; a test keeps it in step)."""
    lines = ["| setting | default | needed by | what it is |", "| --- | --- | --- | --- |"]
    for row in settings_table():
        default = f"`{row.default}`" if row.default else "(none)"
        needed = row.needed_by or "-"
        lines.append(f"| `{row.name}` | {default} | {needed} | {row.description} |")
    return "\n".join(lines) + "\n"
