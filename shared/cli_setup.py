"""`guestwarden setup grant-permissions`: give the app's managed identity exactly the Graph app roles the
enabled flows need (shared/permissions.py), idempotently.

Run it as an operator who may grant app roles (Privileged Role Administrator, or an app holding
AppRoleAssignment.ReadWrite.All + Application.Read.All): on a workstation DefaultAzureCredential uses your
`az login`. It never removes a role unless `--prune` is given, and then only Microsoft Graph roles the flows do
not need (each one listed).
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from shared.adapters.graph import GraphError
from shared.adapters.graph.admin import GraphAdminGateway
from shared.bootstrap import graph_config, operator_credential
from shared.cli_common import EXIT_GRAPH, EXIT_USAGE, JsonFlag, TenantSim, command_settings, err, table_console
from shared.permissions import (
    FLOWS,
    GRAPH_APP_ID,
    PlannedChange,
    ServicePrincipal,
    UnknownPermission,
    features_for,
    plan_grants,
    required_permissions,
)
from shared.settings import Feature, Settings

setup_app = typer.Typer(help="Set up guestwarden in a tenant: grant the managed identity its Graph permissions.")

FlowsOption = Annotated[
    str,
    typer.Option(
        "--flows",
        help=f"Comma-separated flows the deployment runs ({', '.join(FLOWS)}); the permissions follow from them "
        "and from LICENSE_MODE / STALE_DRY_RUN.",
    ),
]
ALL_FLOWS = ",".join(FLOWS)


def parse_flows(text: str) -> tuple[Feature, ...]:
    """The settings features of `--flows`; exits 2 naming an unknown flow."""
    try:
        return features_for(name.strip() for name in text.split(",") if name.strip())
    except ValueError as exc:
        err.print(Text(f"--flows: {exc}", style="red"))
        raise typer.Exit(EXIT_USAGE) from None


class IdentityNotFound(LookupError):
    pass


@dataclass(frozen=True)
class GrantOutcome:
    identity: ServicePrincipal
    changes: list[PlannedChange]
    dry_run: bool

    def count(self, action: str) -> int:
        return sum(change.action == action for change in self.changes)

    def as_json(self) -> dict[str, object]:
        return {
            "identity": {
                "id": self.identity.id,
                "appId": self.identity.app_id,
                "displayName": self.identity.display_name,
            },
            "dryRun": self.dry_run,
            "granted": 0 if self.dry_run else self.count("grant"),
            "removed": 0 if self.dry_run else self.count("remove"),
            "changes": [change.as_json() for change in self.changes],
        }


async def grant_permissions(
    settings: Settings, identity: str, required: set[str], *, dry_run: bool, prune: bool
) -> GrantOutcome:
    async with GraphAdminGateway(operator_credential(settings), graph_config(settings)) as admin:
        graph = await admin.service_principal_by_app_id(GRAPH_APP_ID)
        if graph is None:
            raise GraphError(404, "Request_ResourceNotFound", "no Microsoft Graph service principal in the tenant")
        target = await admin.service_principal(identity)
        if target is None:
            raise IdentityNotFound(f"--identity: no service principal with object id or appId {identity}")
        plan = plan_grants(required, graph, await admin.app_role_assignments(target.id), prune)
        if not dry_run:
            for change in plan:
                if change.action == "grant":
                    await admin.grant_app_role(target.id, graph.id, change.app_role_id)
                elif change.action == "remove" and change.assignment_id:
                    await admin.remove_app_role_assignment(target.id, change.assignment_id)
    return GrantOutcome(target, plan, dry_run)


STYLE = {"grant": "green", "remove": "red", "keep": "", "extra": "yellow"}


def _print(outcome: GrantOutcome) -> None:
    who = outcome.identity
    verb = {
        "grant": "would grant" if outcome.dry_run else "granted",
        "remove": "would remove" if outcome.dry_run else "removed",
    }
    title = f"Graph app roles of {who.display_name} ({who.id})" + (" - dry run" if outcome.dry_run else "")
    table = Table(title=Text(title))  # Text, not markup: the display name is the tenant's
    for column in ("action", "permission", "app role id"):
        table.add_column(column)
    for change in outcome.changes:
        action = verb.get(change.action, "not needed, kept" if change.action == "extra" else "already granted")
        table.add_row(Text(action, style=STYLE[change.action]), Text(change.permission), Text(change.app_role_id))
    out = table_console()
    out.print(table)
    grants, removals = outcome.count("grant"), outcome.count("remove")
    if outcome.dry_run:
        out.print(f"dry run: {grants} to grant, {removals} to remove; nothing changed.")
    elif grants or removals:
        out.print(f"{grants} granted, {removals} removed. New tokens carry them (existing ones within the hour).")
    else:
        out.print("nothing to change: every required role is already granted.")
    if outcome.count("extra"):
        out.print("roles marked 'not needed' stay; `--prune` removes them.")


@setup_app.command("grant-permissions")
def grant_permissions_command(
    identity: Annotated[
        str,
        typer.Option("--identity", help="The managed identity: its service principal object id or its appId."),
    ],
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
    flows: FlowsOption = ALL_FLOWS,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Also remove Microsoft Graph roles the flows do not need.")
    ] = False,
) -> None:
    """Grant the identity exactly the Graph app roles the enabled flows need (idempotent)."""
    features = parse_flows(flows)
    with command_settings(tenant_sim, (Feature.GRAPH,)) as settings:
        required = required_permissions(features, settings)
        try:
            outcome = asyncio.run(grant_permissions(settings, identity, required, dry_run=dry_run, prune=prune))
        except (IdentityNotFound, ValueError) as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_USAGE if not isinstance(exc, UnknownPermission) else EXIT_GRAPH) from None
        except GraphError as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_GRAPH) from None
    if as_json:
        sys.stdout.write(json.dumps(outcome.as_json(), indent=2) + "\n")
    else:
        _print(outcome)


def register(app: typer.Typer) -> None:
    app.add_typer(setup_app, name="setup")
