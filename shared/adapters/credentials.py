"""Credentials for Graph: the managed identity in Azure, a fixed token for the loopback simulator.

Which one is used is a setting (GRAPH_AUTH), chosen in shared.bootstrap; the gateway cannot tell them apart.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential

REFRESH_MARGIN_S = 300


LOCAL_OPERATOR_CLIENT_ID = "5e1c0f2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b"
"""The appId of the sample tenant's automation identity (local/fixtures: AppRoleAssignment.ReadWrite.All and
Application.Read.All): who `setup grant-permissions` and `doctor --identity` are on the loopback simulator."""


class LocalTokenCredential(AsyncTokenCredential):
    """A token for the loopback simulator. Settings refuse it unless Graph is a loopback simulator.

    With `token_url` (the simulator's client-credentials endpoint, see `local_token_url`) it asks the simulator,
    which issues a signed token whose `roles` claim lists the app's granted Graph roles, and keeps it until
    shortly before it expires (as azure-identity's credentials do). Without it, it hands out a fixed string,
    which the simulator refuses (401): only unit tests that never reach Graph use that.
    """

    def __init__(
        self,
        token: str = "local-simulator-token",  # noqa: S107 - not a secret
        token_url: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self._token = token
        self._token_url = token_url
        self._client_id = client_id
        self._cached: AccessToken | None = None

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if self._token_url is None:
            return AccessToken(self._token, int(time.time()) + 3600)
        if self._cached is not None and self._cached.expires_on - REFRESH_MARGIN_S > time.time():
            return self._cached
        form = {"grant_type": "client_credentials", "scope": " ".join(scopes)}
        if self._client_id:
            form["client_id"] = self._client_id
        async with httpx.AsyncClient(timeout=30.0) as http:
            response = await http.post(self._token_url, data=form)
        response.raise_for_status()
        body = response.json()
        self._cached = AccessToken(str(body["access_token"]), int(time.time()) + int(body.get("expires_in", 3600)))
        return self._cached

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: Any) -> None:
        return None


def local_token_url(graph_base_url: str, tenant: str = "common") -> str:
    """The simulator's token endpoint next to its Graph root (http://127.0.0.1:PORT/v1.0 -> /TENANT/oauth2/...)."""
    parts = urlsplit(graph_base_url)
    return f"{parts.scheme}://{parts.netloc}/{tenant}/oauth2/v2.0/token"


def managed_identity_credential(client_id: str | None) -> AsyncTokenCredential:
    """DefaultAzureCredential: the Function App's managed identity in Azure, az login on a workstation."""
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()
