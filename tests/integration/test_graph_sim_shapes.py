"""The simulator's payloads have the keys and JSON types of Microsoft's documented examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator

DOCS = Path(__file__).resolve().parents[1] / "data" / "graph_docs"


def doc(name: str) -> dict[str, Any]:
    data = json.loads((DOCS / name).read_text())
    assert data["source"]
    return data


# Lists that may be empty on one side, so their elements are not compared: each says why. Any other empty list
# fails the comparison (an empty list on either side would otherwise pass without comparing anything).
MAY_BE_EMPTY = {
    "$.value[0].riskEventTypes_v2": "Microsoft's signIn example lists no risk event types",
    "$.value[0].appliedConditionalAccessPolicies": "the fixture's sign-ins carry no Conditional Access results",
    "$.businessPhones": "the fixture's users have no business phones",
}


def assert_same_shape(expected: Any, actual: Any, path: str = "$") -> None:
    """Every documented key exists with the same JSON type (null matches anything, numbers match numbers)."""
    if expected is None or actual is None:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            if key in ("@odata.nextLink",):
                continue
            assert key in actual, f"{path}.{key} missing"
            assert_same_shape(value, actual[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), path
        if path in MAY_BE_EMPTY and not (expected and actual):
            return
        assert expected, f"{path}: the documented example is an empty list, nothing to compare"
        assert actual, f"{path}: the simulator answered an empty list where the docs show elements"
        assert_same_shape(expected[0], actual[0], f"{path}[0]")
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), path
    elif isinstance(expected, int | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), path
    else:
        assert isinstance(actual, type(expected)), f"{path}: {type(actual)} != {type(expected)}"


def test_subscribed_skus_shape(graph_http: httpx.Client):
    assert_same_shape(doc("subscribedsku-list.json")["response"], graph_http.get("/subscribedSkus").json())


def test_signins_shape(graph_http: httpx.Client):
    assert_same_shape(doc("signin-list.json")["response"], graph_http.get("/auditLogs/signIns").json())


def test_user_list_with_sign_in_activity_shape(graph_http: httpx.Client, graph_sim: GraphSimulator):
    actual = graph_http.get(
        "/users", params={"$select": "displayName,userPrincipalName,signInActivity", "$filter": "userType eq 'Member'"}
    ).json()
    expected = doc("user-list-signinactivity.json")["response"]
    assert_same_shape(expected, actual)
    assert actual["@odata.context"].endswith("$metadata#users(displayName,userPrincipalName,signInActivity)")


def test_user_get_default_shape(graph_http: httpx.Client, graph_sim: GraphSimulator):
    actual = graph_http.get(f"/users/{graph_sim.named('sponsor-adele')}").json()
    expected = doc("user-get.json")["response"]
    assert set(actual) == set(expected)
    assert_same_shape(expected, actual)


def test_delta_shape(graph_http: httpx.Client, graph_sim: GraphSimulator):
    data = doc("user-delta.json")
    page = graph_http.get("/users/delta", params={"$select": "displayName,jobTitle,mobilePhone"}).json()
    assert_same_shape(data["response"], page)
    assert set(page["value"][0]) == set(data["response"]["value"][0])
    graph_http.delete(f"/users/{graph_sim.named('stale-all')}")
    while "@odata.nextLink" in page:
        page = graph_http.get(page["@odata.nextLink"]).json()
    changes = graph_http.get(page["@odata.deltaLink"]).json()["value"]
    assert changes == [dict(data["removed_item"], id=graph_sim.named("stale-all"))]


def test_batch_and_error_shapes(graph_http: httpx.Client, graph_sim: GraphSimulator):
    graph_sim.faults.fail_next(1, route="BATCH GET /users/{id}")
    body = {
        "requests": [{"id": "2", "method": "GET", "url": "/users/x"}, {"id": "1", "method": "GET", "url": "/users/y"}]
    }
    responses = graph_http.post("/$batch", json=body).json()
    expected = doc("json-batching.json")["response"]
    assert_same_shape(expected["responses"][1], responses["responses"][0])
    assert_same_shape(doc("error.json")["response"], responses["responses"][1]["body"])


def test_an_empty_list_on_either_side_fails_the_comparison():
    with pytest.raises(AssertionError, match="empty list"):
        assert_same_shape({"value": [{"id": "1"}]}, {"value": []})
    with pytest.raises(AssertionError, match="empty list"):
        assert_same_shape({"value": []}, {"value": [{"id": "1"}]})
    with pytest.raises(AssertionError, match="empty list"):
        assert_same_shape({"value": []}, {"value": []})


@pytest.mark.parametrize("name", sorted(p.name for p in DOCS.glob("*.json")))
def test_every_doc_example_names_its_source(name: str):
    assert "microsoft-graph-docs-contrib" in doc(name)["source"]
