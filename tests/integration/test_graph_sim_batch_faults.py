"""$batch, fault injection and request counting."""

from __future__ import annotations

import time

import httpx
import pytest

from local.graph_sim import GraphSimulator


def get(request_id: str, url: str) -> dict[str, str]:
    return {"id": request_id, "method": "GET", "url": url}


def test_batch_mixed_results(graph_http: httpx.Client, graph_sim: GraphSimulator):
    ok, missing, throttled = graph_sim.named("stale-all"), "nobody", graph_sim.named("pending-old")
    graph_sim.faults.fail_next(1, status=429, retry_after_s=7, route="BATCH GET /users/{id}")
    requests = [
        get("t", f"/users/{throttled}"),
        get("a", f"/users/{ok}?$select=id,mail"),
        get("m", f"/users/{missing}"),
    ]
    response = graph_http.post("/$batch", json={"requests": requests})
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert by_id["t"]["status"] == 429 and by_id["t"]["headers"]["Retry-After"] == "7"
    assert by_id["t"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["a"]["status"] == 200 and set(by_id["a"]["body"]) == {"@odata.context", "id", "mail"}
    assert by_id["m"]["status"] == 404
    assert graph_sim.requests["POST /$batch"] == 1
    assert graph_sim.requests["BATCH GET /users/{id}"] == 3
    assert graph_sim.requests["GET /users/{id}"] == 0


def test_batch_writes_and_dependencies(graph_http: httpx.Client, graph_sim: GraphSimulator):
    uid = graph_sim.named("stale-all")
    body = {
        "requests": [
            {
                "id": "1",
                "method": "PATCH",
                "url": f"/users/{uid}",
                "body": {"accountEnabled": False},
                "headers": {"Content-Type": "application/json"},
            },
            {"id": "2", "method": "POST", "url": f"/users/{uid}/revokeSignInSessions", "dependsOn": ["1"]},
            {"id": "3", "method": "DELETE", "url": "/users/nobody"},
            {"id": "4", "method": "DELETE", "url": f"/users/{uid}", "dependsOn": ["3"]},
        ]
    }
    responses = {r["id"]: r for r in graph_http.post("/$batch", json=body).json()["responses"]}
    assert [responses[i]["status"] for i in "1234"] == [204, 200, 404, 424]
    assert "body" not in responses["1"]
    assert responses["2"]["body"]["value"] is True
    assert graph_sim.user(uid)["accountEnabled"] is False


def test_batch_limits(graph_http: httpx.Client):
    too_many = {"requests": [get(str(i), "/users?$top=1") for i in range(21)]}
    response = graph_http.post("/$batch", json=too_many)
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadRequest"
    assert graph_http.post("/$batch", json={"requests": [get("1", "/x"), get("1", "/y")]}).status_code == 400
    assert graph_http.post("/$batch", json={"nope": []}).status_code == 400
    twenty = {"requests": [get(str(i), "/users?$top=1") for i in range(20)]}
    assert graph_http.post("/$batch", json=twenty).status_code == 200


def test_fail_next_is_deterministic_and_changes_nothing(graph_http: httpx.Client, graph_sim: GraphSimulator):
    uid = graph_sim.named("accepted-no-location")
    graph_sim.faults.fail_next(2, status=503, retry_after_s=2, route="PATCH /users/{id}")
    for _ in range(2):
        response = graph_http.patch(f"/users/{uid}", json={"usageLocation": "DE"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "2"
        assert response.json()["error"]["code"] == "serviceNotAvailable"
        assert graph_sim.user(uid)["usageLocation"] is None
    assert graph_http.patch(f"/users/{uid}", json={"usageLocation": "DE"}).status_code == 204
    assert graph_sim.requests["PATCH /users/{id}"] == 3


def test_random_faults_are_reproducible_with_a_seed(graph_sim: GraphSimulator, graph_http: httpx.Client):
    def run() -> list[int]:
        graph_sim.faults.configure(rate_429=0.3, rate_503=0.1, retry_after_s=3, seed=42)
        return [graph_http.get("/subscribedSkus").status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert {429, 503, 200} <= set(first)
    graph_sim.faults.clear()
    assert graph_http.get("/subscribedSkus").status_code == 200


def test_fault_routes_and_latency(graph_sim: GraphSimulator, graph_http: httpx.Client):
    graph_sim.faults.configure(rate_429=1.0, routes=["GET /subscribedSkus"], latency_ms=50)
    assert graph_http.get("/users?$top=1").status_code == 200
    started = time.perf_counter()
    throttled = graph_http.get("/subscribedSkus")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert time.perf_counter() - started >= 0.05


def test_bad_fault_rates_are_refused(graph_sim: GraphSimulator):
    with pytest.raises(ValueError):
        graph_sim.faults.configure(rate_429=0.8, rate_503=0.5)


def test_unknown_segment_and_method(graph_http: httpx.Client):
    assert graph_http.get("/nothingHere").status_code == 400
    assert graph_http.put("/users/x").status_code == 405
