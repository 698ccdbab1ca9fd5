"""Thin trigger adapters, one Blueprint module per flow.

A function here parses its trigger, calls one service from shared.services, and maps the outcome to a
response. No business rule lives here. function_app.py registers BLUEPRINTS.
"""

import azure.functions as func

from functions import attest, dashboard, licensing, notifications, posture, queue_health, risk, stale, subscriptions

BLUEPRINTS: list[func.Blueprint] = [
    notifications.bp,
    subscriptions.bp,
    licensing.bp,
    risk.bp,
    stale.bp,
    attest.bp,
    posture.bp,
    queue_health.bp,
    dashboard.bp,
]
