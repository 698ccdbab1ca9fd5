"""Every row of the simulator's query contract (local/graph_sim/contract_queries.py), both ways, over HTTP:
what Microsoft documents is served (with or without advanced query parameters, as documented), and everything
else is refused with 400 Request_UnsupportedQuery, as Graph refuses it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from local.graph_sim.contract_queries import (
    ADVANCED,
    DEFAULT,
    SIGNIN_FILTERS,
    USER_FILTERS,
    USER_ORDERBY,
    PropertyRow,
)

OPERATORS = ("eq", "ne", "not", "ge", "le", "gt", "lt", "in", "startswith", "endswith", "null")
AQP = {"ConsistencyLevel": "eventual"}


def literal(prop: str) -> str:
    if prop.lower().endswith("datetime"):
        return "2024-01-01T00:00:00Z"
    if prop.lower() == "accountenabled":
        return "true"
    if prop.lower() == "status/errorcode":
        return "53011"
    return "'a'"


def clause(row: PropertyRow, operator: str) -> str:
    name, value = row.prop, literal(row.prop)
    return {
        "not": f"not({name} eq {value})",
        "in": f"{name} in ({value})",
        "startswith": f"startswith({name},'a')",
        "endswith": f"endswith({name},'a')",
        "null": f"{name} eq null",
    }.get(operator, f"{name} {operator} {value}")


def cases(rows: tuple[PropertyRow, ...]) -> list[Any]:
    return [pytest.param(row, op, id=f"{row.resource}.{row.prop}.{op}") for row in rows for op in OPERATORS]


def get_users(client: httpx.Client, flt: str, *, advanced: bool) -> httpx.Response:
    params = {"$filter": flt, "$top": "5", **({"$count": "true"} if advanced else {})}
    return client.get("/users", params=params, headers=AQP if advanced else None)


def refused(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.json()["error"]["code"] == "Request_UnsupportedQuery"


@pytest.mark.parametrize(("row", "operator"), cases(USER_FILTERS))
def test_user_filter_row(graph_http: httpx.Client, row: PropertyRow, operator: str) -> None:
    flt = clause(row, operator)
    plain, advanced = get_users(graph_http, flt, advanced=False), get_users(graph_http, flt, advanced=True)
    support = row.support(operator)
    if operator == "not" and support is not None:
        support = ADVANCED if ADVANCED in (support, row.support("eq")) else DEFAULT
    if support is None:
        assert refused(plain) and refused(advanced), (flt, plain.text)
    elif support == DEFAULT:
        assert plain.status_code == 200 and advanced.status_code == 200, (flt, plain.text, advanced.text)
    else:
        assert refused(plain) and "ConsistencyLevel" in plain.json()["error"]["message"], (flt, plain.text)
        assert advanced.status_code == 200, (flt, advanced.text)


def test_created_date_time_never_eq_null_gt_or_lt(graph_http: httpx.Client) -> None:
    """The corrections of GRAPH-FACTS.md: what the old partitioned scan sent is refused, with or without AQP."""
    for flt in ("createdDateTime eq null", "createdDateTime gt 2024-01-01T00:00:00Z", "createdDateTime lt 2024-01-01"):
        for advanced in (False, True):
            assert refused(get_users(graph_http, f"userType eq 'Guest' and {flt}", advanced=advanced)), flt


def test_sign_in_activity_stands_alone(graph_http: httpx.Client) -> None:
    alone = get_users(graph_http, "signInActivity/lastSignInDateTime le 2024-01-01T00:00:00Z", advanced=False)
    assert alone.status_code == 200
    combined = "userType eq 'Guest' and signInActivity/lastSignInDateTime le 2024-01-01T00:00:00Z"
    assert refused(get_users(graph_http, combined, advanced=True))


def test_an_unknown_property_is_refused(graph_http: httpx.Client) -> None:
    response = get_users(graph_http, "favouriteColour eq 'blue'", advanced=True)
    assert refused(response) and "favouriteColour" in response.json()["error"]["message"]


@pytest.mark.parametrize(("prop", "support"), sorted(USER_ORDERBY.items()))
def test_user_orderby_row(graph_http: httpx.Client, prop: str, support: str) -> None:
    plain = graph_http.get("/users", params={"$orderby": prop, "$top": "3"})
    advanced = graph_http.get("/users", params={"$orderby": prop, "$top": "3", "$count": "true"}, headers=AQP)
    assert advanced.status_code == 200
    assert (plain.status_code == 200) if support == DEFAULT else refused(plain)
    # with a $filter, $orderby is always an advanced query (aad-advanced-queries.md)
    filtered = {"$orderby": prop, "$filter": "userType eq 'Guest'", "$top": "3"}
    assert refused(graph_http.get("/users", params=filtered))
    assert graph_http.get("/users", params={**filtered, "$count": "true"}, headers=AQP).status_code == 200


def test_orderby_on_an_unlisted_property_is_refused(graph_http: httpx.Client) -> None:
    assert refused(graph_http.get("/users", params={"$orderby": "mail", "$count": "true"}, headers=AQP))


@pytest.mark.parametrize(("row", "operator"), cases(SIGNIN_FILTERS))
def test_sign_in_filter_row(graph_http: httpx.Client, row: PropertyRow, operator: str) -> None:
    flt = clause(row, operator)
    response = graph_http.get("/auditLogs/signIns", params={"$filter": flt, "$top": "5"})
    if row.support(operator) is None:
        assert refused(response), (flt, response.text)
    else:
        assert response.status_code == 200, (flt, response.text)


def test_the_queries_guestwarden_sends_are_served_as_documented(graph_http: httpx.Client) -> None:
    """Written out by hand, not read from the table: the table could drift, these are the app's real requests
    (shared/adapters/graph/) against the documented support (filter-directory-objects.md)."""
    guests = "userType eq 'Guest'"
    ranged = f"{guests} and createdDateTime ge 2024-01-01T00:00:00Z and createdDateTime le 2025-01-01T00:00:00Z"
    for flt in (guests, ranged, f"{guests} and createdDateTime ge 2024-01-01T00:00:00Z"):
        assert get_users(graph_http, flt, advanced=False).status_code == 200, flt  # no AQP needed
    span = {"$filter": f"{guests} and createdDateTime ge 1970-01-01T00:00:00Z", "$orderby": "createdDateTime"}
    assert refused(graph_http.get("/users", params={**span, "$top": "1"}))  # $orderby createdDateTime: AQP
    spanned = graph_http.get("/users", params={**span, "$top": "1", "$count": "true"}, headers=AQP)
    assert spanned.status_code == 200 and spanned.json()["@odata.count"] > 0
    counted = graph_http.get("/users/$count", params={"$filter": guests}, headers=AQP)
    assert counted.status_code == 200 and int(counted.text) == 300
    window = "createdDateTime ge 2024-01-01T00:00:00Z and createdDateTime le 2030-01-01T00:00:00Z"
    assert graph_http.get("/auditLogs/signIns", params={"$filter": window, "$top": "1000"}).status_code == 200


def test_inside_a_batch_only_the_request_s_own_headers_count(graph_http: httpx.Client) -> None:
    """json-batching.md: headers belong to each inner request; ConsistencyLevel on the envelope does not reach
    them (aad-advanced-queries.md: put it in the inner request)."""
    url = "/users?$filter=userType ne 'Member'&$count=true&$top=1"
    envelope_only = graph_http.post(
        "/$batch", json={"requests": [{"id": "1", "method": "GET", "url": url}]}, headers=AQP
    ).json()["responses"][0]
    assert envelope_only["status"] == 400 and envelope_only["body"]["error"]["code"] == "Request_UnsupportedQuery"
    own = graph_http.post(
        "/$batch", json={"requests": [{"id": "1", "method": "GET", "url": url, "headers": AQP}]}
    ).json()["responses"][0]
    assert own["status"] == 200 and own["body"]["@odata.count"] > 0
