"""users/delta, sign-in logs, sendMail, revokeSignInSessions and partner tenant lookups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from local.graph_sim import GraphSimulator
from local.graph_sim.clock import iso_z


def follow_delta(client: httpx.Client, url: str, **params: str) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    page = client.get(url, params=params or None).json()
    while True:
        items.extend(page["value"])
        if "@odata.deltaLink" in page:
            return items, page["@odata.deltaLink"]
        page = client.get(page["@odata.nextLink"]).json()


def test_delta_full_round_then_changes(graph_http: httpx.Client, graph_sim: GraphSimulator):
    items, delta_link = follow_delta(graph_http, "/users/delta", **{"$select": "id,userType,externalUserState"})
    assert len(items) == 308 and delta_link.startswith(graph_sim.base_url + "/users/delta?$deltatoken=")
    assert set(items[0]) == {"id", "userType", "externalUserState"}
    pending = graph_sim.named("pending-recent")
    graph_sim.update_user(pending, externalUserState="Accepted")
    graph_http.patch(f"/users/{graph_sim.named('accepted-no-location')}", json={"usageLocation": "FR"})
    graph_http.delete(f"/users/{graph_sim.named('stale-all')}")
    changes, next_link = follow_delta(graph_http, delta_link)
    by_id = {item["id"]: item for item in changes}
    assert set(by_id) == {pending, graph_sim.named("accepted-no-location"), graph_sim.named("stale-all")}
    assert by_id[pending]["externalUserState"] == "Accepted"
    assert by_id[graph_sim.named("stale-all")]["@removed"] == {"reason": "changed"}
    assert follow_delta(graph_http, next_link)[0] == []


def test_delta_latest_and_expiry(graph_http: httpx.Client, graph_sim: GraphSimulator):
    latest = graph_http.get("/users/delta", params={"$deltatoken": "latest", "$select": "id"}).json()
    assert latest["value"] == [] and "@odata.deltaLink" in latest
    graph_sim.clock.advance(timedelta(days=6, hours=23))
    assert graph_http.get(latest["@odata.deltaLink"]).status_code == 200
    stale = graph_http.get("/users/delta", params={"$deltatoken": "latest"}).json()["@odata.deltaLink"]
    graph_sim.clock.advance(timedelta(days=7, minutes=1))
    expired = graph_http.get(stale)
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "syncStateNotFound"


def test_signins_window_newest_first_and_paging(graph_http: httpx.Client, graph_sim: GraphSimulator):
    graph_sim.throttling.configure(reports_per_10s=None)  # pages of 3: a paging test, not a quota test
    now = graph_sim.clock.start
    window = f"createdDateTime ge {iso_z(now - timedelta(hours=9))} and createdDateTime le {iso_z(now)}"
    page = graph_http.get("/auditLogs/signIns", params={"$filter": window, "$top": "3"}).json()
    assert len(page["value"]) == 3 and page["@odata.nextLink"].startswith("http://127.0.0.1:")
    entries = list(page["value"])
    while "@odata.nextLink" in page:
        page = graph_http.get(page["@odata.nextLink"]).json()
        entries.extend(page["value"])
    stamps = [e["createdDateTime"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    codes = {e["status"]["errorCode"] for e in entries}
    assert {53011, 530032, 53003, 50126, 500212, 50053} <= codes
    risk = [e for e in entries if e["status"]["errorCode"] == 53011]
    assert risk[0]["status"]["failureReason"] == "User blocked due to risk on home tenant."
    assert all(e["homeTenantId"] != e["resourceTenantId"] for e in risk)
    ca = next(e for e in entries if e["userId"] == graph_sim.named("risk-ca-53003"))
    assert ca["riskLevelDuringSignIn"] == "high" and ca["appliedConditionalAccessPolicies"][0]["result"] == "failure"
    one = graph_http.get("/auditLogs/signIns", params={"$filter": f"userId eq '{graph_sim.named('risk-53011')}'"})
    assert len(one.json()["value"]) == 2
    assert graph_http.get("/auditLogs/signIns", params={"$top": "1001"}).status_code == 400


def test_added_signins_show_up(graph_http: httpx.Client, graph_sim: GraphSimulator):
    later = iso_z(graph_sim.clock.now() + timedelta(seconds=30))
    graph_sim.add_signin({"id": "new", "createdDateTime": later, "userId": "u", "status": {"errorCode": 0}})
    assert graph_http.get("/auditLogs/signIns", params={"$top": "1"}).json()["value"][0]["id"] == "new"


def test_send_mail_goes_to_the_outbox(graph_http: httpx.Client, graph_sim: GraphSimulator):
    message = {
        "subject": "How to unblock your account",
        "body": {"contentType": "HTML", "content": "<p>hi</p>"},
        "toRecipients": [{"emailAddress": {"address": "rita.riskyhome@fabrikam.com"}}],
    }
    sent = graph_http.post("/users/guestwarden@contoso.onmicrosoft.com/sendMail", json={"message": message})
    assert sent.status_code == 202 and sent.content == b""
    assert graph_sim.outbox[0]["message"] == message
    assert graph_sim.outbox[0]["sender"] == "guestwarden@contoso.onmicrosoft.com"
    no_to = graph_http.post("/users/guestwarden@contoso.onmicrosoft.com/sendMail", json={"message": {"subject": "x"}})
    assert no_to.status_code == 400
    assert graph_http.post("/users/guestwarden@contoso.onmicrosoft.com/sendMail", json={}).status_code == 400
    assert len(graph_sim.outbox) == 1


def test_revoke_sessions_and_tenant_information(graph_http: httpx.Client, graph_sim: GraphSimulator):
    uid = graph_sim.named("stale-all")
    revoked = graph_http.post(f"/users/{uid}/revokeSignInSessions")
    assert revoked.status_code == 200 and revoked.json()["value"] is True
    home = next(e for e in graph_http.get("/auditLogs/signIns").json()["value"] if e["status"]["errorCode"] == 53011)
    info = graph_http.get(f"/tenantRelationships/findTenantInformationByTenantId(tenantId='{home['homeTenantId']}')")
    assert info.status_code == 200 and info.json()["defaultDomainName"] == "fabrikam.com"
