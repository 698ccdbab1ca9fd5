"""`guestwarden`: the operator CLI (typer + rich), a package of its own, not deployed to Azure (.funcignore).

cli/main.py composes the command tree from one module per area: guests.py (inventory, blocked guests),
stale.py (stale plan|apply, restore), subscriptions.py, ops.py (audit, dead letters), doctor.py, setup.py;
common.py holds the shared options, exit codes and settings. Every adapter and setting comes from
shared.bootstrap, the use cases from shared.services.
"""
