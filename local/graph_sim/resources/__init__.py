"""One module per Graph resource; each exposes register(router)."""

from __future__ import annotations

from local.graph_sim.resources import (
    batch,
    delta,
    directory,
    groups,
    invitations,
    licenses,
    mail,
    policies,
    service_principals,
    signins,
    subscriptions,
    users,
)
from local.graph_sim.router import Router

MODULES = (
    users,
    delta,
    licenses,
    groups,
    directory,
    signins,
    mail,
    subscriptions,
    service_principals,
    invitations,
    policies,
    batch,
)


def build_router() -> Router:
    router = Router()
    for module in MODULES:
        module.register(router)
    return router
