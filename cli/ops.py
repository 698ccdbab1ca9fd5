"""Day-2 commands: `guestwarden audit` (what guestwarden did, and why) and `guestwarden deadletters list|resubmit`.

Composed into the main CLI by cli/main.py. docs/operations.md shows them at work.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.common import EXIT_USAGE, JsonFlag, command_settings, err, table_console
from shared.bootstrap import build_operator_queues, build_state_store
from shared.domain.messages import GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE
from shared.settings import Feature

QUEUES = (GUEST_CHANGES_QUEUE, RISK_INCIDENTS_QUEUE)
deadletters_app = typer.Typer(help="Dead-lettered Service Bus messages: list, resubmit.", no_args_is_help=True)

Queue = Annotated[
    str | None,
    typer.Option("--queue", help=f"One queue ({', '.join(QUEUES)}); default: both.", show_default=False),
]


def _queues(queue: str | None) -> tuple[str, ...]:
    if queue is None:
        return QUEUES
    if queue not in QUEUES:
        err.print(f"[red]--queue: unknown queue '{Text(queue).plain}'; expected one of {', '.join(QUEUES)}[/red]")
        raise typer.Exit(EXIT_USAGE)
    return (queue,)


def _print_json(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")


def audit_command(
    subject: Annotated[str | None, typer.Option("--subject", help="Only this user (object id).")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action, e.g. assign-license.")] = None,
    days: Annotated[int, typer.Option(min=1, max=3650, help="How far back to look, in days.")] = 7,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries (the newest).")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """The audit log: every action and decision guestwarden took, with its reason and evidence."""
    with command_settings(None, (Feature.STATE,)) as settings:

        async def collect() -> list[dict[str, Any]]:
            since = datetime.now(UTC) - timedelta(days=days)
            rows: list[dict[str, Any]] = []
            async with build_state_store(settings) as state:
                async for entry in state.query(since, subject=subject, action=action):
                    rows.append(
                        {
                            "at": entry.at.isoformat(),
                            "actor": entry.actor,
                            "action": entry.action,
                            "subject": entry.subject,
                            "outcome": entry.outcome,
                            "dryRun": entry.dry_run,
                            "reason": entry.reason,
                            "correlationId": entry.correlation_id,
                            "evidence": entry.evidence,
                        }
                    )
            return rows[-limit:]

        rows = asyncio.run(collect())
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} audit entr{'y' if len(rows) == 1 else 'ies'} in the last {days} d")
    for column in ("at", "action", "subject", "outcome", "reason", "run / correlation"):
        table.add_column(column, overflow="fold")
    for row in rows:
        outcome = row["outcome"] + (" (dry run)" if row["dryRun"] else "")
        style = "red" if row["outcome"].startswith("failed") else ""
        # Text(), not markup: reasons can quote names written by outsiders.
        table.add_row(
            Text(row["at"][:19].replace("T", " ")),
            Text(row["action"]),
            Text(row["subject"]),
            Text(outcome, style=style),
            Text(row["reason"]),
            Text(row["correlationId"]),
        )
    table_console().print(table)


@deadletters_app.command("list")
def list_command(
    queue: Queue = None,
    max_count: Annotated[int, typer.Option("--max", min=1, max=5000, help="At most this many per queue.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters with their reason, without changing them."""
    queues = _queues(queue)
    with command_settings(None, (Feature.QUEUE,)) as settings:

        async def collect() -> list[dict[str, Any]]:
            async with build_operator_queues(settings) as dlq:
                return [d.as_json() for q in queues for d in await dlq.peek(q, max_count)]

        rows = asyncio.run(collect())
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} dead letter(s)")
    for column in ("queue", "seq", "enqueued", "reason", "description", "deliveries", "body"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            *(
                Text(str(row[k] if row[k] is not None else "-"))
                for k in ("queue", "sequenceNumber", "enqueued", "reason", "description", "deliveryCount", "body")
            )
        )
    table_console().print(table)
    if rows:
        err.print("Fix the cause, then: guestwarden deadletters resubmit --queue QUEUE [--seq N ...] --yes")


@deadletters_app.command("resubmit")
def resubmit_command(
    queue: Annotated[str, typer.Option("--queue", help=f"The queue ({', '.join(QUEUES)}).")],
    seq: Annotated[
        list[int] | None, typer.Option("--seq", help="Only these sequence numbers (repeatable); default: all.")
    ] = None,
    max_count: Annotated[int, typer.Option("--max", min=1, max=5000, help="At most this many.")] = 100,
    yes: Annotated[bool, typer.Option("--yes", help="Really resubmit; without it, only show what would be.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send dead letters back to their queue (safe: processing is idempotent). Dry run unless --yes."""
    (name,) = _queues(queue)
    with command_settings(None, (Feature.QUEUE,)) as settings:

        async def go() -> list[dict[str, Any]]:
            async with build_operator_queues(settings) as dlq:
                if not yes:
                    letters = await dlq.peek(name, max_count)
                    return [d.as_json() for d in letters if not seq or d.sequence_number in seq]
                return [d.as_json() for d in await dlq.resubmit(name, seq or None, max_count)]

        rows = asyncio.run(go())
    verb = "resubmitted" if yes else "would resubmit"
    if as_json:
        _print_json([{**row, "status": verb} for row in rows])
    else:
        for row in rows:
            err.print(Text(f"{verb} {name} #{row['sequenceNumber']} ({row['reason'] or 'no reason'})"))
        err.print(f"{len(rows)} message(s) {verb}." + ("" if yes else " Add --yes to do it."))
    if seq and len(rows) < len(set(seq)):
        missing = sorted(set(seq) - {row["sequenceNumber"] for row in rows})
        err.print(f"[yellow]not in the dead-letter queue: {', '.join(map(str, missing))}[/yellow]")
