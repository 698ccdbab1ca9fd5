"""Every row of the throttling contract (local/graph_sim/contract_throttling.py), both ways, on the wire: what the
quota allows passes, the next request gets Graph's 429 with a Retry-After that really lets it in.

Windows are shrunk with `time_scale` so a minute's quota passes in seconds; nothing here sleeps a fixed time: a
retry waits for the Retry-After the simulator announced, measured, not assumed."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest

from local.graph_sim import GraphSimulator
from local.graph_sim.contract_throttling import IDENTITY_RU_PER_10S, IDENTITY_WRITES, REPORTS, SIGN_IN_ACTIVITY
from local.graph_sim.throttle import ru_cost, tenant_size

# Each test shrinks the windows to about 2-3 s: long enough for its requests to land in one window even on a
# loaded machine, short enough that waiting out a Retry-After costs little.
REPORTS_SCALE = 5.0  # 10 s -> 2 s
ACTIVITY_SCALE = 20.0  # a minute -> 3 s
WRITES_SCALE = 50.0  # 150 s -> 3 s


def throttled(response: httpx.Response, quota: str) -> float:
    """The Retry-After of Graph's 429 for `quota` (fails if the response is anything else)."""
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "TooManyRequests"
    assert response.headers["x-ms-throttle-information"] == quota
    wait = float(response.headers["Retry-After"])
    assert wait > 0
    return wait


def after(wait: float, send: Any) -> httpx.Response:
    """Send again once the announced Retry-After has passed (time measured, not a guessed sleep)."""
    time.sleep(wait)  # exactly the Retry-After Graph announced, no more
    response: httpx.Response = send()
    return response


def test_the_documented_limits_are_the_defaults(graph_sim: GraphSimulator) -> None:
    quotas = graph_sim.throttling
    assert quotas.enabled and quotas.size == "medium"  # 308 users: 50 to 500
    assert quotas.identity_ru_per_10s == IDENTITY_RU_PER_10S["medium"] == 5_000
    assert quotas.writes_per_150s == IDENTITY_WRITES.limit == 3_000
    assert quotas.reports_per_10s == REPORTS.limit == 5
    assert quotas.sign_in_activity_per_minute == SIGN_IN_ACTIVITY.limit == 10
    assert quotas.outlook_concurrency == 4
    assert [tenant_size(n) for n in (49, 50, 500, 501)] == ["small", "medium", "medium", "large"]


def test_reports_five_requests_per_ten_seconds(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    graph_sim.throttling.configure(time_scale=REPORTS_SCALE)

    def signins() -> httpx.Response:
        return graph_http.get("/auditLogs/signIns", params={"$top": "1"})

    assert [signins().status_code for _ in range(5)] == [200] * 5
    wait = throttled(signins(), "reports")
    assert wait <= REPORTS.window_s / REPORTS_SCALE
    assert after(wait, signins).status_code == 200


def test_sign_in_activity_ten_requests_a_minute_nextlinks_and_single_reads_included(
    graph_sim: GraphSimulator, graph_http: httpx.Client
) -> None:
    graph_sim.throttling.configure(time_scale=ACTIVITY_SCALE)
    graph_sim.sign_in_activity_paging = "cap-120"
    first = graph_http.get("/users", params={"$select": "id,signInActivity", "$top": "120"})
    assert first.status_code == 200
    second = graph_http.get(first.json()["@odata.nextLink"])  # the select rides in the token: still counted
    assert second.status_code == 200
    uid = graph_sim.named("stale-all")
    singles = [graph_http.get(f"/users/{uid}", params={"$select": "signInActivity"}) for _ in range(8)]
    assert [r.status_code for r in singles] == [200] * 8
    wait = throttled(graph_http.get("/users", params={"$select": "id,signInActivity"}), "signInActivity")
    assert wait <= SIGN_IN_ACTIVITY.window_s / ACTIVITY_SCALE
    assert graph_http.get("/users", params={"$select": "id"}).status_code == 200  # other reads are not held
    assert after(wait, lambda: graph_http.get(f"/users/{uid}", params={"$select": "signInActivity"})).status_code == 200


def test_switched_off_a_quota_never_refuses(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    graph_sim.throttling.configure(reports_per_10s=None)
    assert {graph_http.get("/auditLogs/signIns", params={"$top": "1"}).status_code for _ in range(12)} == {200}
    graph_sim.throttling.configure(reports_per_10s=5)
    graph_sim.throttling.enabled = False
    assert {graph_http.get("/auditLogs/signIns", params={"$top": "1"}).status_code for _ in range(12)} == {200}
    with pytest.raises(ValueError, match="unknown throttling setting"):
        graph_sim.throttling.configure(reports_per_hour=1)


@pytest.mark.parametrize(
    ("method", "template", "query", "cost"),
    [
        ("GET", "/users", {}, 2),
        ("GET", "/users", {"$select": "id"}, 1),
        ("GET", "/users/{id}", {"$select": "id", "$top": "5"}, 1),  # never below 1
        ("GET", "/users/{id}", {"$expand": "sponsors"}, 3),
        ("GET", "/groups/{id}/members", {"$select": "id", "$top": "999"}, 2),
        ("GET", "/groups/{id}/transitiveMembers", {}, 5),
        ("GET", "/subscribedSkus", {}, 3),
        ("GET", "/servicePrincipals/{id}/appRoleAssignments", {}, 2),
        ("GET", "/directory/deletedItems/{id}", {}, 1),
        ("PATCH", "/users/{id}", {}, 1),
        ("DELETE", "/users/{id}", {}, 1),
    ],
)
def test_resource_unit_costs(method: str, template: str, query: dict[str, str], cost: int) -> None:
    """throttling-limits.md, identity and access cost table and its $select/$expand/$top modifiers."""
    assert ru_cost(method, template, query) == cost


def test_identity_bucket_spends_resource_units(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    graph_sim.throttling.configure(identity_ru_per_10s=5, time_scale=REPORTS_SCALE)
    assert graph_http.get("/subscribedSkus").status_code == 200  # 3 RU
    assert graph_http.get("/users", params={"$top": "1", "$select": "id"}).status_code == 200  # 1 RU (select, top)
    assert graph_http.get("/users", params={"$top": "1", "$select": "id"}).status_code == 200  # 1 RU: 5 spent
    wait = throttled(graph_http.get("/users", params={"$top": "1", "$select": "id"}), "identity")
    assert graph_http.get("/auditLogs/signIns", params={"$top": "1"}).status_code == 200  # another service
    assert after(wait, lambda: graph_http.get("/users", params={"$top": "1", "$select": "id"})).status_code == 200


def test_identity_writes_have_their_own_quota(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    graph_sim.throttling.configure(writes_per_150s=3, time_scale=WRITES_SCALE)
    uid = graph_sim.named("stale-all")

    def patch() -> httpx.Response:
        return graph_http.patch(f"/users/{uid}", json={"jobTitle": "Partner"})

    assert [patch().status_code for _ in range(3)] == [204] * 3
    wait = throttled(patch(), "identity writes")
    assert graph_http.get(f"/users/{uid}").status_code == 200  # reads go on
    assert after(wait, patch).status_code == 204


def test_outlook_four_concurrent_requests_per_mailbox(graph_sim: GraphSimulator, graph_http: httpx.Client) -> None:
    graph_sim.faults.configure(latency_ms=400, routes=["POST /users/{id}/sendMail"])
    sender = graph_sim.user("mailer")["userPrincipalName"]
    to = [{"emailAddress": {"address": "someone@fabrikam.com"}}]
    message = {"subject": "s", "body": {"contentType": "Text", "content": "b"}, "toRecipients": to}

    def send() -> int:
        return graph_http.post(f"/users/{sender}/sendMail", json={"message": message}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: send(), range(6)))
    assert statuses.count(202) == 4 and statuses.count(429) == 2
    assert graph_sim.throttling.throttled["outlook concurrency"] == 2
    assert send() == 202  # none in flight any more


def test_inside_a_batch_each_request_is_throttled_on_its_own(
    graph_sim: GraphSimulator, graph_http: httpx.Client
) -> None:
    graph_sim.throttling.configure(time_scale=REPORTS_SCALE)
    requests = [{"id": str(i), "method": "GET", "url": "/auditLogs/signIns?$top=1"} for i in range(7)]
    answer = graph_http.post("/$batch", json={"requests": requests})
    assert answer.status_code == 200
    statuses = sorted(r["status"] for r in answer.json()["responses"])
    assert statuses == [200] * 5 + [429] * 2
    limited = next(r for r in answer.json()["responses"] if r["status"] == 429)
    assert float(limited["headers"]["Retry-After"]) > 0
