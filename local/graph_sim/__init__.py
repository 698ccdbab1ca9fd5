"""A wire-level Microsoft Graph simulator: the unchanged msgraph-sdk talks to it over HTTP (see DESIGN.md)."""

from __future__ import annotations

from local.graph_sim.clock import SimClock
from local.graph_sim.faults import FaultInjector
from local.graph_sim.server import GraphSimulator

__all__ = ["FaultInjector", "GraphSimulator", "SimClock"]
