"""The Graph adapter: the one place that talks to Microsoft Graph (msgraph-sdk, async), in domain terms.

- errors.py   SDK and transport failures -> the port's GraphError
- mapping.py  Graph's users, contacts, sign-ins, subscriptions, SKUs (JSON or SDK model) -> domain types, and
              what we ask of Graph (fields, filters)
- pacing.py   sliding-window pacers for Graph's per-app quotas
- client.py   client construction, the throttling hold, retries (who retries what)
- batch.py    JSON `$batch`: builders and the executor
- gateway.py  GraphGateway: every operation the flows' ports (shared/ports/graph.py) name
- admin.py    GraphAdminGateway: set-up and doctor operations the flows never need

What bootstrap, the CLI, local/, bench/ and the tests use is re-exported here.
"""

from __future__ import annotations

from shared.adapters.graph.batch import BatchOps
from shared.adapters.graph.client import GRAPH_SCOPE, GraphConfig
from shared.adapters.graph.gateway import GraphGateway
from shared.adapters.graph.mapping import (
    USER_FIELDS,
    created_filter,
    sign_in_from_json,
    subscription_from_sdk,
    user_from_graph,
    user_from_json,
    user_from_sdk,
)
from shared.ports.graph import BATCH_LIMIT, BatchRequest, BatchResult, GraphError

__all__ = [
    "BATCH_LIMIT",
    "GRAPH_SCOPE",
    "USER_FIELDS",
    "BatchOps",
    "BatchRequest",
    "BatchResult",
    "GraphConfig",
    "GraphError",
    "GraphGateway",
    "created_filter",
    "sign_in_from_json",
    "subscription_from_sdk",
    "user_from_graph",
    "user_from_json",
    "user_from_sdk",
]
