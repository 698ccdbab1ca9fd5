"""Credentials for Graph: the managed identity in Azure, a fixed token for the loopback simulator.

Which one is used is a setting (GRAPH_AUTH), chosen in shared.bootstrap; the gateway cannot tell them apart.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential


class LocalTokenCredential(AsyncTokenCredential):
    """Hands out a fixed bearer token. Settings refuse it unless Graph is a loopback simulator."""

    def __init__(self, token: str = "local-simulator-token") -> None:  # noqa: S107 - not a secret
        self._token = token

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: Any) -> None:
        return None


def managed_identity_credential(client_id: str | None) -> AsyncTokenCredential:
    """DefaultAzureCredential: the Function App's managed identity in Azure, az login on a workstation."""
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()
