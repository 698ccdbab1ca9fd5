"""The unchanged msgraph-sdk against the simulator, wired as GRAPH-FACTS.md says."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph.generated.models.assigned_license import AssignedLicense
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.user import User
from msgraph.generated.users.item.assign_license.assign_license_post_request_body import (
    AssignLicensePostRequestBody,
)
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

from local.graph_sim import GraphSimulator

GUEST_SKU = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"


class FakeCredential:
    """Stands in for azure-identity: hands out a token the simulator minted (it refuses any other)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(
        self, *scopes: str, claims: str | None = None, enable_cae: bool = False, **kw: Any
    ) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def build_client(sim: GraphSimulator) -> tuple[GraphServiceClient, GraphRequestAdapter]:
    auth = AzureIdentityAuthenticationProvider(
        FakeCredential(sim.token()),  # type: ignore[arg-type]
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=["localhost", "127.0.0.1"],
    )
    http_client = GraphClientFactory.create_with_default_middleware()
    adapter = GraphRequestAdapter(auth, client=http_client)
    adapter.base_url = sim.base_url
    return GraphServiceClient(request_adapter=adapter), adapter


async def test_sdk_lists_guests_across_pages(graph_sim: GraphSimulator):
    graph_sim.sign_in_activity_paging = "cap-120"  # the 2023 reading: at most 120 a page, whatever $top asks
    client, adapter = build_client(graph_sim)
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
        filter="userType eq 'Guest'", select=["id", "displayName", "userType", "signInActivity"], top=999
    )
    first = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
    assert first is not None and len(first.value or []) == 120
    seen: list[User] = []

    def collect(user: User) -> bool:
        seen.append(user)
        return True

    await PageIterator(first, adapter).iterate(collect)
    assert len(seen) == 300 and {u.user_type for u in seen} == {"Guest"}
    assert graph_sim.requests["GET /users"] == 3


async def test_sdk_assigns_license_and_sees_400(graph_sim: GraphSimulator):
    client, _ = build_client(graph_sim)
    body = AssignLicensePostRequestBody(
        add_licenses=[AssignedLicense(sku_id=uuid.UUID(GUEST_SKU), disabled_plans=[])], remove_licenses=[]
    )
    user = await client.users.by_user_id(graph_sim.named("accepted-unlicensed")).assign_license.post(body)
    assert user is not None and user.id == graph_sim.named("accepted-unlicensed")
    assert graph_sim.user("accepted-unlicensed")["assignedLicenses"][0]["skuId"] == GUEST_SKU
    with pytest.raises(ODataError) as caught:
        await client.users.by_user_id(graph_sim.named("accepted-no-location")).assign_license.post(body)
    assert caught.value.response_status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.message == "License assignment cannot be done for user with invalid usage location."


async def test_sdk_rides_out_an_injected_429(graph_sim: GraphSimulator):
    client, _ = build_client(graph_sim)
    graph_sim.faults.fail_next(1, status=429, retry_after_s=1, route="GET /users/{id}")
    user = await client.users.by_user_id(graph_sim.named("stale-all")).get()
    assert user is not None and user.display_name == "Sven Stale"
    assert graph_sim.requests["GET /users/{id}"] == 2


async def test_sdk_404_is_odata_error(graph_sim: GraphSimulator):
    client, _ = build_client(graph_sim)
    with pytest.raises(ODataError) as caught:
        await client.users.by_user_id("nobody").get()
    assert caught.value.response_status_code == 404
    assert caught.value.error is not None and caught.value.error.code == "Request_ResourceNotFound"
