"""`guestwarden doctor`: can this deployment run the flows it enables? Settings, Graph token and reachability,
the Graph permissions actually granted (from the token's `roles` claim, or the identity's app role assignments
with --identity), Entra ID P1 for signInActivity, the /users subscription, the Service Bus queues, the state
store, and the posture checks that concern guestwarden's own working (Entra ID P1/P2 assigned, risk policies that
block guests): each ok / warn / fail with what to fix. Exit 7 when a check fails (warnings do not).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated

import httpx
import typer
from azure.core.exceptions import AzureError
from rich.table import Table
from rich.text import Text

from cli.common import ALL_FLOWS, EXIT_DOCTOR, FlowsOption, JsonFlag, TenantSim, command_env, parse_flows, table_console
from cli.subscriptions import current_status
from shared.adapters.graph import GraphError
from shared.adapters.queue_admin import OperatorQueues
from shared.bootstrap import (
    build_graph_admin,
    build_graph_gateway,
    build_operator_queues,
    build_state_store,
    graph_credential,
    operator_credential,
    posture_deps,
    settings_from_env,
)
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.domain.posture import DOCTOR_CHECKS
from shared.domain.posture import Check as PostureCheck
from shared.ports.publisher import QueueError
from shared.ports.state import StateError
from shared.services.doctor import Check, DoctorPorts, Failure, all_ok, judge_settings, run_doctor
from shared.services.posture import run_posture
from shared.settings import Feature, Settings, SettingsError

STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}


def describe(exc: BaseException) -> Failure | None:
    if isinstance(exc, GraphError):
        return Failure(str(exc), exc.status, exc.code)
    # ValueError: e.g. a malformed connection string, found only when the client is built
    if isinstance(exc, QueueError | StateError | AzureError | sqlite3.Error | OSError | ValueError):
        return Failure(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return Failure(f"{type(exc).__name__}: {exc}")
    return None


def queues_for(features: Sequence[Feature]) -> list[str]:
    queues = [GUEST_CHANGES_QUEUE] if Feature.LICENSING in features or Feature.WEBHOOK in features else []
    return queues + ([RISK_INCIDENTS_QUEUE] if Feature.RISK in features else [])


async def diagnose(settings: Settings, features: Sequence[Feature], identity: str | None) -> list[Check]:
    # The app's own credential: its token's `roles` claim is what the app is granted (on the simulator too, whose
    # token endpoint issues tokens carrying the fixture's grants).
    credential = graph_credential(settings)
    queues = queues_for(features)
    clients: list[OperatorQueues] = []  # built on first use: a malformed connection string is a failed check
    try:
        async with build_graph_admin(settings, credential) as admin:

            async def token() -> str:
                return (await credential.get_token(settings.graph.scope)).token

            async def subscription() -> tuple[bool, str]:
                status = await current_status(settings)
                return status.healthy, status.advice

            async def queue(name: str) -> None:
                if not clients:
                    clients.append(build_operator_queues(settings))
                await clients[0].probe(name)

            async def state() -> None:
                async with build_state_store(settings) as store:
                    await store.get("doctor", "probe")

            async def assignments() -> set[str]:
                # Reading another principal's assignments needs Application.Read.All: the operator's, not the app's.
                assert identity is not None
                async with build_graph_admin(settings, operator_credential(settings)) as operator:
                    return await operator.granted_graph_roles(identity)

            async def posture() -> list[PostureCheck]:
                # the checks about guestwarden's own working; no hygiene scan (the one costly read)
                async with build_graph_gateway(settings) as graph, build_state_store(settings) as store:
                    deps = posture_deps(settings, graph, store)
                    deps.config = replace(deps.config, hygiene=False)
                    report = await run_posture(deps)
                return [check for check in report.checks if check.key in DOCTOR_CHECKS]

            ports = DoctorPorts(
                token=token,
                reach_graph=admin.probe_users,
                sign_in_activity=admin.probe_sign_in_activity,
                subscription=subscription,
                queue=queue,
                state=state,
                describe=describe,
                assignments=assignments if identity else None,
                posture=posture if Feature.POSTURE in features else None,
            )
            return await run_doctor(ports, settings, features, queues)
    finally:
        for client in clients:
            await client.aclose()
        await credential.close()


def _report(checks: list[Check], as_json: bool) -> None:
    if as_json:
        body = {"ok": all_ok(checks), "checks": [check.as_json() for check in checks]}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    table = Table(title="guestwarden doctor")
    for column in ("check", "status", "detail", "what to fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        # Text(), not markup: details quote Graph's and the broker's messages.
        table.add_row(
            Text(check.name), Text(check.status, style=STYLE[check.status]), Text(check.detail), Text(check.fix)
        )
    out = table_console()
    out.print(table)
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    out.print(f"{failed} failed, {warned} warning(s), {len(checks) - failed - warned} ok.")


def doctor(
    tenant_sim: TenantSim = None,
    as_json: JsonFlag = False,
    flows: FlowsOption = ALL_FLOWS,
    identity: Annotated[
        str | None,
        typer.Option(
            "--identity",
            help="Read the granted roles from this service principal's app role assignments (object id or "
            "appId) instead of the token: for running the doctor with your own az login.",
        ),
    ] = None,
) -> None:
    """Check settings, Graph, permissions, Entra ID P1, the subscription, queues and state. Exit 7 on a failure."""
    features = parse_flows(flows)
    needs = (*features, Feature.STATE, *((Feature.QUEUE,) if queues_for(features) else ()))
    with command_env(tenant_sim) as env:
        try:
            settings = settings_from_env(needs, env)
        except SettingsError as exc:
            checks = [judge_settings(exc, features)]
        else:
            checks = asyncio.run(diagnose(settings, features, identity))
    _report(checks, as_json)
    if not all_ok(checks):
        raise typer.Exit(EXIT_DOCTOR)
