"""`guestwarden`: the operator CLI.

Every command works against a real tenant (app settings from the environment, as the Function App reads them;
on a workstation DefaultAzureCredential uses your az login) or against the local Graph simulator with
`--tenant-sim FILE` (a tenant fixture, the simulator is started for the command and stopped after) or
`--tenant-sim URL` (a simulator that is already running, e.g. from `make demo ARGS=--keep-running`).

Exit codes (cli/common.py): 0 done; 2 bad usage or settings; 3 Graph refused or failed; 4 the local
simulator did not start; 5 `stale apply` did not apply; 6 `subscriptions status` unhealthy; 7 `doctor` found a
failing check; 8 `posture` found a failing check.

The command tree, in the order `guestwarden --help` lists it: the top-level commands, then the groups.
"""

from __future__ import annotations

import typer

from cli import attest, doctor, guests, ops, posture, setup, stale, subscriptions

app = typer.Typer(
    help="guestwarden: Entra B2B guest automation, operator commands.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """guestwarden: Entra B2B guest automation, operator commands."""


app.command("guests")(guests.guests)
app.command("blocked")(guests.blocked)
app.command("restore")(stale.restore_command)
app.command("audit")(ops.audit_command)
app.command("doctor")(doctor.doctor)
app.command("posture")(posture.posture)
app.add_typer(stale.stale_app, name="stale")
app.add_typer(subscriptions.subscriptions_app, name="subscriptions")
app.add_typer(ops.deadletters_app, name="deadletters")
app.add_typer(setup.setup_app, name="setup")
app.add_typer(attest.attest_app, name="attest")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
