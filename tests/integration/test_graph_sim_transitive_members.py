"""`GET /groups/{id}/transitiveMembers` on the simulator, both ways, as local/graph_sim/contract_queries.py's
TRANSITIVE_MEMBERS rows say (group-list-transitivemembers.md, aad-advanced-queries.md, paging.md): nested groups
flattened (cycles end), every object typed, paged with nextLinks that keep the first request's options, advanced
options refused without ConsistencyLevel, and only the roles of its permission row let through."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_queries import TRANSITIVE_MEMBERS, TRANSITIVE_MEMBERS_PAGING
from tests.fixtures.graph_sim import bearer

AQP = {"ConsistencyLevel": "eventual"}
USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"


def path(group_id: str) -> str:
    return f"/groups/{group_id}/transitiveMembers"


def read_all(client: httpx.Client, first: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every page, following nextLink as a client does (absolute links, sent back whole)."""
    items: list[dict[str, Any]] = []
    response = client.get(first, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["value"]
        if "@odata.nextLink" not in body:
            return items
        response = client.get(body["@odata.nextLink"])


def test_the_exclusions_group_lists_its_nested_group_and_that_group_s_guest(
    graph_sim: GraphSimulator, graph_http: httpx.Client
) -> None:
    group = graph_sim.named("group-exclusions")
    nested = graph_sim.named("group-exclusions-nested")
    items = read_all(graph_http, path(group), {"$select": "id"})
    types = {item["id"]: item["@odata.type"] for item in items}
    assert types == {
        graph_sim.named("break-glass"): USER,
        graph_sim.named("excluded-by-group"): USER,
        nested: GROUP,
        graph_sim.named("excluded-by-nested-group"): USER,
    }
    assert all(set(item) == {"@odata.type", "id"} for item in items)  # $select=id: the id and the type only
    direct = graph_http.get(f"/groups/{group}/members", params={"$select": "id"}).json()["value"]
    assert graph_sim.named("excluded-by-nested-group") not in {m["id"] for m in direct}  # direct members only
    assert {m["id"]: m["@odata.type"] for m in direct}[nested] == GROUP


def test_nested_cycles_end_and_each_member_is_listed_once(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    outer, nested = graph_sim.named("group-exclusions"), graph_sim.named("group-exclusions-nested")
    guest = graph_sim.named("stale-all")
    with graph_sim.store.lock:
        graph_sim.store.groups[nested]["members"] += [outer, graph_sim.named("excluded-by-group"), guest]
    ids = [item["id"] for item in read_all(graph_http, path(outer))]
    assert len(ids) == len(set(ids)) == 5 and outer not in ids and guest in ids
    from_inside = {item["id"] for item in read_all(graph_http, path(nested))}
    assert outer in from_inside and graph_sim.named("break-glass") in from_inside and nested not in from_inside


@pytest.mark.parametrize("mode", sorted(TRANSITIVE_MEMBERS_PAGING))
def test_pages_follow_the_server_s_size_and_next_links_keep_the_options(
    graph_sim: GraphSimulator, graph_http: httpx.Client, mode: str
) -> None:
    graph_sim.transitive_members_paging = mode
    group = graph_sim.named("group-exclusions")
    with graph_sim.store.lock:
        graph_sim.store.groups[group]["members"] += [u for u in sorted(graph_sim.store.users)[:30]]
    total = len(graph_sim.store.transitive_members(group))
    first = graph_http.get(path(group), params={"$select": "id", "$top": "999"}).json()
    page = min(999, TRANSITIVE_MEMBERS_PAGING[mode].maximum)
    assert len(first["value"]) == min(page, total)
    if total > page:
        link = first["@odata.nextLink"]
        assert link.startswith(graph_sim.base_url + path(group) + "?") and "$select=id" in link and "$top=999" in link
    everyone = read_all(graph_http, path(group), {"$select": "id", "$top": "999"})
    assert sorted(item["id"] for item in everyone) == sorted(m["id"] for m in graph_sim.store.transitive_members(group))
    default = graph_http.get(path(group)).json()
    assert len(default["value"]) == min(TRANSITIVE_MEMBERS.default_page, page, total)


def test_a_page_size_beyond_999_is_refused(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    response = graph_http.get(path(graph_sim.named("group-exclusions")), params={"$top": "1000"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "Request_UnsupportedQuery"


@pytest.mark.parametrize("option", sorted(TRANSITIVE_MEMBERS.advanced_options))
def test_advanced_options_are_refused_without_consistency_level(
    graph_sim: GraphSimulator, graph_http: httpx.Client, option: str
) -> None:
    value = {"$filter": "startswith(displayName,'a')", "$search": '"displayName:a"', "$orderby": "displayName"}
    group = path(graph_sim.named("group-exclusions"))
    plain = graph_http.get(group, params={option: value[option]})
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "Request_UnsupportedQuery"
    advanced = graph_http.get(group, params={option: value[option], "$count": "true"}, headers=AQP)
    assert advanced.status_code == 501  # documented, but not modelled: never mistaken for served


def test_count_needs_consistency_level_and_comes_on_the_first_page_only(
    graph_sim: GraphSimulator, graph_http: httpx.Client
) -> None:
    graph_sim.transitive_members_paging = "cap-5"
    group = graph_sim.named("group-exclusions")
    with graph_sim.store.lock:
        graph_sim.store.groups[group]["members"] += sorted(graph_sim.store.users)[:10]
    ignored = graph_http.get(path(group), params={"$count": "true"}).json()
    assert "@odata.count" not in ignored  # $count=true without the header is ignored, not an error
    counted = graph_http.get(path(group), params={"$count": "true"}, headers=AQP).json()
    assert counted["@odata.count"] == len(graph_sim.store.transitive_members(group))
    assert "@odata.count" not in graph_http.get(counted["@odata.nextLink"]).json()


def test_only_the_permission_row_s_roles_read_it(graph_sim: GraphSimulator, graph_http_as: Any) -> None:
    group = path(graph_sim.named("group-exclusions"))
    assert graph_http_as("User.Read.All", "AuditLog.Read.All").get(group).status_code == 403
    for role in ("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"):
        assert graph_http_as(role).get(group).status_code == 200, role
    assert graph_sim.denied == {"GET /groups/{id}/transitiveMembers": 1}


def test_inside_a_batch_it_is_authorised_and_paged_like_a_direct_request(graph_sim: GraphSimulator) -> None:
    group = graph_sim.named("group-exclusions")
    url = f"{path(group)}?$select=id&$top=999"
    batch = {"requests": [{"id": "1", "method": "GET", "url": url}]}
    for roles, status in ((("GroupMember.Read.All",), 200), (("User.Read.All",), 403)):
        with httpx.Client(base_url=graph_sim.base_url, headers=bearer(graph_sim.token(roles=roles))) as client:
            answer = client.post("/$batch", json=batch).json()["responses"][0]
        assert answer["status"] == status, answer
    assert graph_sim.requests["BATCH GET /groups/{id}/transitiveMembers"] == 2
