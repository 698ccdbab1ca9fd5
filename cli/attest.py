"""`guestwarden attest link`: the sponsor attestation link a warning mail carries, for admins and tests.

Composed into the main CLI by cli/main.py. The link is printed on stdout (or as JSON with --json); the rules
(who may get one, for which review) are shared.services.attestation's.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.text import Text

from cli.common import EXIT_GRAPH, EXIT_USAGE, JsonFlag, TenantSim, command_settings, err
from shared.adapters.graph import GraphError
from shared.bootstrap import attest_deps, build_graph_gateway, build_state_store
from shared.services.attestation import LinkRefused, SponsorLink, sponsor_link
from shared.settings import Feature

attest_app = typer.Typer(help="Sponsor attestation links (keep or remove a warned guest).", no_args_is_help=True)


@attest_app.command("link")
def link_command(
    user: Annotated[str, typer.Option("--user", help="Object id of a guest guestwarden has warned.")],
    sponsor: Annotated[
        str, typer.Option("--sponsor", help="Object id of one of its sponsors, or a STALE_FALLBACK_REVIEWERS mail.")
    ],
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the personal link a sponsor gets in the warning mail: a page to keep the guest or remove it now."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE)) as settings:

        async def go() -> SponsorLink:
            async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
                deps = attest_deps(settings, graph, state)
                if deps is None:
                    raise LinkRefused(
                        "attestation links are off: set STALE_ATTEST_SIGNING_KEY and STALE_ATTEST_BASE_URL"
                    )
                return await sponsor_link(deps, user, sponsor)

        try:
            link = asyncio.run(go())
        except LinkRefused as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_USAGE) from None
        except GraphError as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_GRAPH) from None
    if as_json:
        value = {
            "url": link.url,
            "userId": link.guest_id,
            "sponsor": link.sponsor,
            "episode": link.episode,
            "expires": link.expires.isoformat(),
        }
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
    else:
        sys.stdout.write(link.url + "\n")
        err.print(f"valid until {link.expires:%Y-%m-%d %H:%M} UTC; opening it changes nothing, its buttons do")
