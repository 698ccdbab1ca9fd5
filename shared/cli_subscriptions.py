"""`guestwarden subscriptions status|ensure`: the /users change-notification subscription, for operators.

`status` reads what guestwarden remembers (state) and what Graph says, and tells how long until it expires;
`ensure` runs the same keeper the timer runs (create, renew, recreate), e.g. right after a deployment.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import typer
from rich.table import Table
from rich.text import Text

from shared.adapters.graph import GraphError
from shared.bootstrap import build_graph_gateway, build_state_store, subscription_config
from shared.cli_common import EXIT_GRAPH, EXIT_UNHEALTHY, JsonFlag, TenantSim, command_settings, err, table_console
from shared.ports.clock import utc_now
from shared.services.subscriptions import (
    RECORD_KEY,
    RECORD_KIND,
    SubscriptionDeps,
    SubscriptionQuotaExceeded,
    ensure_subscription,
)
from shared.settings import Feature, Settings

subscriptions_app = typer.Typer(help="The /users change-notification subscription: status or ensure.")


@dataclass(frozen=True)
class SubscriptionStatus:
    remembered_id: str | None
    live: bool
    expires: str | None
    hours_left: float | None
    notification_url_matches: bool | None
    healthy: bool
    advice: str


async def subscription_status(settings: Settings) -> SubscriptionStatus:
    async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
        record = await state.get(RECORD_KIND, RECORD_KEY)
        remembered = record.value.get("id") if record else None
        sub = await graph.get_subscription(str(remembered)) if isinstance(remembered, str) else None
    if sub is None:
        advice = "no live subscription: run `guestwarden subscriptions ensure` (or wait for the keeper timer)"
        return SubscriptionStatus(
            remembered if isinstance(remembered, str) else None, False, None, None, None, False, advice
        )
    hours = (sub.expiration - datetime.now(UTC)).total_seconds() / 3600
    config = subscription_config(settings)
    matches = sub.notification_url == config.notification_url if config.notification_url else None
    healthy = hours > settings.subscriptions.renew_before_hours and matches is not False
    if matches is False:
        advice = "the subscription points at another URL: `ensure` recreates it for GRAPH_NOTIFICATION_URL"
    elif not healthy:
        advice = "expires within the renewal window: check that the keeper timer runs, or run `ensure`"
    else:
        advice = "healthy"
    return SubscriptionStatus(sub.id, True, sub.expiration.isoformat(), round(hours, 1), matches, healthy, advice)


@subscriptions_app.command("status")
def status_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Is the /users subscription alive, pointing at us, and far from expiry? Exit 6 when not healthy."""
    with command_settings(tenant_sim, (Feature.GRAPH, Feature.STATE)) as settings:
        try:
            status = asyncio.run(subscription_status(settings))
        except GraphError as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_GRAPH) from None
    if as_json:
        sys.stdout.write(json.dumps(asdict(status), indent=2) + "\n")
    else:
        table = Table(title="/users subscription")
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for key, value in asdict(status).items():
            table.add_row(key, Text("-" if value is None else str(value)))
        table_console().print(table)
    if not status.healthy:
        raise typer.Exit(EXIT_UNHEALTHY)


@subscriptions_app.command("ensure")
def ensure_command(tenant_sim: TenantSim = None, as_json: JsonFlag = False) -> None:
    """Create, renew or recreate the subscription now (Graph runs the validation handshake on our webhook)."""
    features = (Feature.GRAPH, Feature.STATE, Feature.SUBSCRIPTION)
    with command_settings(tenant_sim, features) as settings:

        async def run() -> dict[str, str | None]:
            async with build_graph_gateway(settings) as graph, build_state_store(settings) as state:
                deps = SubscriptionDeps(graph, state, subscription_config(settings), utc_now)
                outcome = await ensure_subscription(deps)
            expires = outcome.expires.isoformat() if outcome.expires else None
            return {"action": outcome.action, "subscriptionId": outcome.subscription_id, "expires": expires}

        try:
            result = asyncio.run(run())
        except (GraphError, SubscriptionQuotaExceeded) as exc:
            err.print(Text(str(exc), style="red"))
            raise typer.Exit(EXIT_GRAPH) from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        table_console().print(Text(f"{result['action']}: {result['subscriptionId']} (expires {result['expires']})"))


def register(app: typer.Typer) -> None:
    app.add_typer(subscriptions_app, name="subscriptions")
