"""The gateway's reading of exclusion groups (transitive members) through msgraph-sdk against the simulator:
nested groups' users included, groups left out of the users but counted as members, every page followed, and a
page the caller does not ask for never fetched."""

from __future__ import annotations

import uuid

import pytest

from local.graph_sim import GraphSimulator
from shared.adapters.graph import GraphError, GraphGateway

pytestmark = pytest.mark.timeout(60)
PAGES = "BATCH GET /groups/{id}/transitiveMembers"


def add_members(sim: GraphSimulator, group_id: str, count: int) -> set[str]:
    """`count` new guests, members of the group."""
    ids = {str(uuid.UUID(int=n + 1, version=4)) for n in range(count)}
    with sim.store.lock:
        for user_id in sorted(ids):
            sim.store.add_user({"id": user_id, "userType": "Guest", "userPrincipalName": f"{user_id}@example.com"})
        sim.store.groups[group_id]["members"] += sorted(ids)
    return ids


async def test_the_exclusions_group_s_users_include_its_nested_group_s_guest(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    pages = [page async for page in gateway.transitive_member_pages(sim.named("group-exclusions"))]
    assert len(pages) == 1 and sim.requests[PAGES] == 1
    (page,) = pages
    assert set(page.user_ids) == {
        sim.named("break-glass"),
        sim.named("excluded-by-group"),
        sim.named("excluded-by-nested-group"),
    }
    assert page.members == 4  # the nested group is a member too (it counts against the cap), not a user


@pytest.mark.parametrize(("mode", "pages"), [("refuse-above-999", 2), ("cap-5", 241)])
async def test_every_page_is_followed_whatever_page_size_graph_plays(
    gateway: GraphGateway, sim: GraphSimulator, mode: str, pages: int
) -> None:
    sim.transitive_members_paging = mode
    group = sim.named("group-exclusions")
    added = add_members(sim, group, 1_200)
    read = [page async for page in gateway.transitive_member_pages(group)]
    assert len(read) == pages == sim.requests[PAGES]
    users = {uid for page in read for uid in page.user_ids}
    assert added < users and len(users) == 1_203 and sum(p.members for p in read) == 1_204


async def test_a_page_the_caller_does_not_ask_for_is_never_fetched(gateway: GraphGateway, sim: GraphSimulator) -> None:
    sim.transitive_members_paging = "cap-5"
    group = sim.named("group-exclusions")
    add_members(sim, group, 40)
    async for page in gateway.transitive_member_pages(group):
        assert page.members == 5
        break
    assert sim.requests[PAGES] == 1


async def test_without_a_group_read_role_graph_s_403_reaches_the_caller(
    gateway: GraphGateway, sim: GraphSimulator
) -> None:
    sim.set_graph_roles({"User.Read.All", "AuditLog.Read.All"})
    with pytest.raises(GraphError) as refused:
        async for _ in gateway.transitive_member_pages(sim.named("group-exclusions")):
            pass
    assert refused.value.status == 403 and refused.value.code == "Authorization_RequestDenied"
