"""Sponsor attestation on fakes: the signed token, the confirmation page, keep and remove, and hostile links.

The whole path a sponsor takes: the sweep's warning mail -> the link in it -> GET (a page, no change) -> POST
from that page (keep or remove, once per episode). The e2e test (tests/e2e/test_attestation_flow.py) walks the
same path through the local host and the Graph simulator.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.adapters.templates import AttestTemplates
from shared.domain.attestation import (
    AttestToken,
    Choice,
    TokenError,
    confirm_code,
    confirm_ok,
    judge,
    reviewer,
    sign,
    verify,
)
from shared.domain.directory import DirectoryContact
from shared.domain.stale import Stage, StageMemory
from shared.ports.graph import GraphError
from shared.services.attestation import (
    AttestConfig,
    AttestDeps,
    AttestReply,
    AttestRequest,
    handle_attestation,
)
from shared.services.stale import RECORD_KIND, StaleConfig, restore_guest, sweep_stale_guests
from tests.unit.fakes_stale import items_of
from tests.unit.test_stale_service import POLICY, START, Clock, guest, make_deps, tenant

KEY = "k" * 40
OLD_KEY = "o" * 40
BASE = "https://guestwarden.example.net"
CONFIG = AttestConfig(keys=(KEY,), base_url=BASE, keep_days=60, link_days=44, max_removals_per_day=2, dry_run=False)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def token(**overrides: Any) -> AttestToken:
    values: dict[str, Any] = {"guest_id": "g1", "sponsor": "s1", "episode": "inactive-since:x", "expires": NOW}
    values["expires"] = NOW + timedelta(days=1)
    values.update(overrides)
    return AttestToken(**values)


# --- the token ------------------------------------------------------------------------------------------------


def test_a_signed_token_verifies_and_names_guest_sponsor_episode_and_expiry() -> None:
    signed = sign(token(), KEY)
    assert verify(signed, [KEY], NOW) == token()
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", signed)  # URL-safe as it is


@pytest.mark.parametrize("field", ["g", "s", "e", "x", "k"])
def test_changing_any_field_of_the_payload_breaks_the_signature(field: str) -> None:
    version, payload, signature = sign(token(), KEY).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data[field] = data[field] + 1 if isinstance(data[field], int) else data[field] + "x"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as refused:
        verify(f"{version}.{forged}.{signature}", [KEY], NOW)
    assert refused.value.reason == "forged"


def test_an_expired_token_is_refused_as_expired_and_a_forged_one_as_forged() -> None:
    with pytest.raises(TokenError) as expired:
        verify(sign(token(), KEY), [KEY], NOW + timedelta(days=1))
    assert expired.value.reason == "expired"
    with pytest.raises(TokenError) as forged:
        verify(sign(token(), "x" * 40), [KEY], NOW)  # someone else's key
    assert forged.value.reason == "forged"


def test_rotation_previous_keys_still_verify_and_a_removed_key_does_not() -> None:
    old = sign(token(), OLD_KEY)
    assert verify(old, [KEY, OLD_KEY], NOW).guest_id == "g1"
    with pytest.raises(TokenError):
        verify(old, [KEY], NOW)


@given(st.text(max_size=300))
def test_garbage_is_refused_as_forged_never_an_exception(text: str) -> None:
    with pytest.raises(TokenError) as refused:
        verify(text, [KEY], NOW)
    assert refused.value.reason == "forged"


def test_verification_compares_in_constant_time() -> None:
    import inspect

    from shared.domain import attestation

    source = inspect.getsource(attestation.verify) + inspect.getsource(attestation.confirm_ok)
    assert source.count("hmac.compare_digest") >= 3
    assert "== signature" not in source and "signature ==" not in source


def test_the_confirmation_code_is_bound_to_the_token_and_to_the_hour_it_was_shown() -> None:
    signed = sign(token(), KEY)
    code = confirm_code(KEY, signed, NOW)
    assert confirm_ok(code, signed, [KEY], NOW + timedelta(minutes=30))
    assert not confirm_ok(code, signed, [KEY], NOW + timedelta(hours=2))
    assert not confirm_ok(code, sign(token(guest_id="g2"), KEY), [KEY], NOW)
    assert not confirm_ok(code.replace(code[-3:], "AAA"), signed, [KEY], NOW)
    assert not confirm_ok("", signed, [KEY], NOW) and not confirm_ok("abc.def", signed, [KEY], NOW)


# --- what an answer may do -----------------------------------------------------------------------------------


def test_judge_keep_remove_and_episodes() -> None:
    warned = StageMemory(Stage.WARNED, NOW, episode="e1")
    kept = judge(warned, "e1", Choice.KEEP, NOW, 60)
    assert kept.status == "keep" and kept.memory is not None and kept.memory.stage is Stage.KEPT
    assert kept.memory.until == NOW + timedelta(days=60) and not kept.enable
    assert judge(warned, "e1", Choice.REMOVE, NOW, 60).status == "remove"
    assert judge(warned, "e0", Choice.KEEP, NOW, 60).status == "over"  # a link from an earlier episode
    assert judge(None, "e1", Choice.KEEP, NOW, 60).status == "over"
    disabled = StageMemory(Stage.DISABLED, NOW, we_disabled=True, episode="e1")
    assert judge(disabled, "e1", Choice.KEEP, NOW, 60).enable
    assert judge(disabled, "e1", Choice.REMOVE, NOW, 60).status == "already-disabled"
    deleted = StageMemory(Stage.DELETED, NOW, episode="e1")
    assert "deleted" in judge(deleted, "e1", Choice.KEEP, NOW, 60).detail
    assert judge(kept.memory, "e1", Choice.REMOVE, NOW, 60).status == "decided"


# --- the pages, through the service ---------------------------------------------------------------------------


def _link_token(url: str) -> str:
    parts = urlsplit(html.unescape(url))
    assert f"{parts.scheme}://{parts.netloc}" == BASE and parts.path == "/api/attest"
    return parse_qs(parts.query)["t"][0]


async def _warned(
    config: AttestConfig = CONFIG, graph: Any = None, **kw: Any
) -> tuple[Any, Any, Clock, AttestDeps, str]:
    """A real sweep warns stale-1 (sponsor s1 = adele) and stale-2 (no sponsor -> fallback reviewers)."""
    graph, clock = graph or tenant(), Clock()
    stale_config = StaleConfig(
        dry_run=False,
        max_actions=100,
        max_percent=100,
        mail_sender="guestwarden@contoso.com",
        fallback_reviewers=("reviews@contoso.com",),
        attest=config,
    )
    deps = make_deps(graph, clock, stale_config, policy=config.reclaim if config.reclaim.reclaim_licenses else POLICY)
    await sweep_stale_guests(deps)
    attest = AttestDeps(graph, deps.state, AttestTemplates(), config, clock)
    [mail] = [m for m in graph.outbox if m.to == ("adele@contoso.com",)]
    [link] = re.findall(r'href="([^"]+)"', mail.body)
    return graph, deps, clock, attest, _link_token(link)


async def get(attest: AttestDeps, raw: str) -> AttestReply:
    return await handle_attestation(AttestRequest("GET", {"t": raw}, {}, {}), attest)


async def post(attest: AttestDeps, raw: str, choice: str, **form: str) -> AttestReply:
    page = await get(attest, raw)
    codes = re.findall(r'name="confirm" value="([^"]+)"', page.html)
    fields = {"t": raw, "choice": choice, "confirm": codes[0] if codes else ""}
    fields.update(form)
    return await handle_attestation(AttestRequest("POST", {"t": raw}, fields, {"Origin": BASE}), attest)


async def snapshot(deps: Any) -> tuple[Any, ...]:
    records = sorted([(r.key, json.dumps(r.value)) async for r in deps.state.list_records(RECORD_KIND)])
    entries = [(e.action, e.outcome) async for e in deps.state.query(START - timedelta(days=1))]
    return records, entries


async def test_each_sponsor_and_the_fallback_reviewers_get_their_own_link() -> None:
    graph, _deps, _, _attest, raw = await _warned()
    assert sorted(m.to for m in graph.outbox) == [("adele@contoso.com",), ("reviews@contoso.com",)]
    assert verify(raw, CONFIG.keys, START).sponsor == "s1"
    [reviewer_mail] = [m for m in graph.outbox if m.to == ("reviews@contoso.com",)]
    [link] = re.findall(r'href="([^"]+)"', reviewer_mail.body)
    assert verify(_link_token(link), CONFIG.keys, START) == AttestToken(
        "stale-2",
        reviewer("reviews@contoso.com"),
        verify(_link_token(link), CONFIG.keys, START).episode,
        START + timedelta(days=44),
    )


async def test_get_shows_the_choice_and_changes_nothing_however_often_it_is_opened() -> None:
    graph, deps, _, attest, raw = await _warned()
    before, writes = await snapshot(deps), list(graph.writes)
    for _ in range(3):  # Safe Links, the antivirus gateway, then the sponsor
        page = await get(attest, raw)
        assert page.status == 200 and 'value="keep"' in page.html and 'value="remove"' in page.html
    assert await snapshot(deps) == before and graph.writes == writes
    assert "script" not in page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"


async def test_keep_stops_the_disable_and_the_guest_is_reviewed_again_after_the_kept_days() -> None:
    graph, deps, clock, attest, raw = await _warned()
    clock.advance(1)
    reply = await post(attest, raw, "keep")
    assert reply.status == 200 and "kept until" in reply.html
    record = await deps.state.get(RECORD_KIND, "stale-1")
    assert record is not None and record.value["stage"] == "kept"
    entries = [e async for e in deps.state.query(START) if e.action == "stale-attest"]
    assert [(e.actor, e.outcome, e.evidence["sponsorMail"]) for e in entries] == [
        ("sponsor:s1", "keep", "adele@contoso.com")
    ]
    clock.advance(20)  # past the warning grace: stale-2 is disabled, stale-1 is not
    await sweep_stale_guests(deps)
    assert "disable stale-2" in graph.writes and "disable stale-1" not in graph.writes
    clock.advance(60 - 20)  # the 60 kept days are over and stale-1 still never signed in: warned again
    plan = await sweep_stale_guests(deps)
    assert ("stale-1", "warn") in [(i.user_id, str(i.action)) for i in await items_of(deps, plan)]


async def test_keep_of_a_guest_guestwarden_disabled_enables_it_again() -> None:
    graph, deps, clock, attest, raw = await _warned()
    clock.advance(14)
    await sweep_stale_guests(deps)
    assert graph.users["stale-1"].account_enabled is False
    reply = await post(attest, raw, "keep")
    assert reply.status == 200 and "enabled again" in reply.html
    assert graph.users["stale-1"].account_enabled is True


async def test_remove_disables_now_restorably_and_once_per_episode() -> None:
    graph, deps, _clock, attest, raw = await _warned()
    reply = await post(attest, raw, "remove")
    assert reply.status == 200 and graph.writes[-2:] == ["disable stale-1", "revoke stale-1"]
    record = await deps.state.get(RECORD_KIND, "stale-1")
    assert record is not None and record.value["stage"] == "disabled" and record.value["weDisabled"]
    again = await post(attest, raw, "keep")  # a replay, or a second sponsor changing their mind
    assert again.status == 409 and graph.users["stale-1"].account_enabled is False
    assert (await restore_guest("stale-1", deps)).status == "re-enabled"  # still restorable
    outcomes = [(e.outcome, e.reason) async for e in deps.state.query(START) if e.action == "stale-attest"]
    assert outcomes == [("remove", "remove"), ("refused", "replayed")]


async def test_remove_is_capped_per_day_and_refused_in_a_dry_run() -> None:
    capped = AttestConfig(keys=(KEY,), base_url=BASE, max_removals_per_day=0, dry_run=False)
    graph, _deps, _, attest, raw = await _warned(capped)
    writes = list(graph.writes)
    reply = await post(attest, raw, "remove")
    assert reply.status == 429 and graph.writes == writes
    dry = AttestConfig(keys=(KEY,), base_url=BASE, dry_run=True)
    attest_dry = AttestDeps(attest.graph, attest.state, attest.templates, dry, attest.clock)
    reply = await post(attest_dry, raw, "remove")
    assert reply.status == 200 and "dry-run" in reply.html and graph.writes == writes
    assert (await post(attest, raw, "keep")).status == 200  # neither used up the episode's answer


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("tampered", 403, "forged"),
        ("other-key", 403, "forged"),
        ("expired", 410, "expired"),
        ("no-confirmation", 403, "no-confirmation"),
        ("cross-site", 403, "cross-site"),
        ("not-a-sponsor", 403, "not-a-sponsor"),
        ("other-guest", 403, "forged"),
    ],
)
async def test_hostile_answers_get_a_4xx_page_no_change_and_an_audit_line(case: str, status: int, reason: str) -> None:
    graph, deps, clock, attest, raw = await _warned()
    before, writes = await snapshot(deps), list(graph.writes)
    headers = {"Origin": BASE}
    form: dict[str, str] = {}
    if case == "tampered":
        raw = raw[:-2] + ("AA" if raw[-2:] != "AA" else "BB")
    elif case == "other-key":
        raw = sign(verify(raw, [KEY], START), "z" * 40)
    elif case == "expired":
        clock.advance(45)
    elif case == "no-confirmation":
        form["confirm"] = confirm_code(KEY, raw, START - timedelta(hours=3))
    elif case == "cross-site":
        headers = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    elif case == "not-a-sponsor":
        graph.sponsors["stale-1"] = [DirectoryContact("s9", "Other", "other@contoso.com")]
    elif case == "other-guest":
        # the stale-1 link with stale-2's id put into it: the signature no longer matches
        version, payload, signature = raw.split(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        data["g"] = "stale-2"
        raw = ".".join([version, base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("="), signature])
    page = await get(attest, raw)
    codes = re.findall(r'name="confirm" value="([^"]+)"', page.html)
    fields = {"t": raw, "choice": "remove", "confirm": codes[0] if codes else "", **form}
    reply = await handle_attestation(AttestRequest("POST", {"t": raw}, fields, headers), attest)
    assert reply.status == status
    assert "Nothing was changed" in reply.html
    records, _entries = await snapshot(deps)
    assert records == before[0] and graph.writes == writes
    refused = [e async for e in deps.state.query(START) if e.action == "stale-attest"]
    assert refused and {e.outcome for e in refused} == {"refused"} and refused[-1].reason == reason
    assert all(raw not in json.dumps(e.evidence) for e in refused)  # a digest, never the token
    assert all(e.subject in ("stale-1", "unknown") for e in refused)


async def test_a_guest_name_with_markup_is_shown_as_text() -> None:
    graph, _deps, _, attest, raw = await _warned()
    graph.users["stale-1"] = guest("stale-1", display_name="<img src=x onerror=alert(1)>")
    page = await get(attest, raw)
    assert "<img" not in page.html and "&lt;img src=x onerror=alert(1)&gt;" in page.html


async def test_a_link_of_an_earlier_episode_changes_nothing() -> None:
    graph, deps, clock, attest, raw = await _warned()
    await deps.state.put(
        RECORD_KIND, "stale-1", StageMemory(Stage.WARNED, clock(), episode="later").to_json(), etag="*"
    )
    assert (await get(attest, raw)).status == 410
    fields = {"t": raw, "choice": "remove", "confirm": confirm_code(KEY, raw, clock())}
    reply = await handle_attestation(AttestRequest("POST", {}, fields, {"Origin": BASE}), attest)
    assert reply.status == 410
    assert "disable stale-1" not in graph.writes


async def test_remove_takes_the_licences_back_and_keep_of_a_disabled_guest_gives_them_back() -> None:
    from dataclasses import replace

    from shared.domain.directory import SubscribedSku

    sku = "078d2b04-f1bd-4111-bbd4-b4b1b354cef4"
    config = replace(CONFIG, reclaim=replace(POLICY, reclaim_licenses=True), max_removals_per_day=5)

    def licensed_tenant() -> Any:
        graph = tenant()
        for user_id in ("stale-1", "stale-2"):
            graph.users[user_id] = replace(graph.users[user_id], direct_sku_ids=frozenset({sku}))
        graph.skus[sku] = SubscribedSku(sku, "GUEST", enabled_units=3, consumed_units=3, capability_status="Enabled")
        return graph

    # remove now: the licence goes with the account, recorded for a restore
    graph, deps, clock, attest, raw = await _warned(config, licensed_tenant())
    removed = await post(attest, raw, "remove")
    assert removed.status == 200 and f"unlicense stale-1 {sku}" in graph.writes
    record = await deps.state.get(RECORD_KIND, "stale-1")
    assert record is not None and record.value["reclaimed"] == {"skus": [sku], "groups": []}
    assert (await restore_guest("stale-1", deps)).status == "re-enabled"
    assert sku in (graph.users["stale-1"].direct_sku_ids or ())

    # keep, after the sweep disabled the guest (and took its licence): enabled again, licence given back
    graph, deps, clock, attest, raw = await _warned(config, licensed_tenant())
    clock.advance(14)
    await sweep_stale_guests(deps)
    assert graph.users["stale-1"].account_enabled is False and not graph.users["stale-1"].direct_sku_ids
    kept = await post(attest, raw, "keep")
    assert kept.status == 200 and graph.users["stale-1"].account_enabled is True
    assert sku in (graph.users["stale-1"].direct_sku_ids or ())


async def test_graph_unreachable_gets_a_503_page_and_changes_nothing() -> None:
    graph, deps, _, attest, raw = await _warned()
    before, writes = await snapshot(deps), list(graph.writes)

    async def down(user_id: str) -> None:
        raise GraphError(None, "transport", "connection reset")

    graph.get_user = down
    page = await get(attest, raw)
    assert page.status == 503 and "cannot be reached" in page.html
    assert await snapshot(deps) == before and graph.writes == writes


async def test_an_operator_keeps_by_the_sponsors_rule_and_the_sponsors_link_is_then_answered() -> None:
    from shared.services.attestation import operator_keep

    graph, deps, clock, attest, raw = await _warned()
    clock.advance(14)
    await sweep_stale_guests(deps)  # the warning grace is over: stale-1 is disabled
    assert graph.users["stale-1"].account_enabled is False
    verdict = await operator_keep(attest, "stale-1", "operator:op@contoso.com")
    assert verdict.status == "keep" and graph.users["stale-1"].account_enabled is True
    record = await deps.state.get(RECORD_KIND, "stale-1")
    assert record is not None and record.value["stage"] == "kept"
    entries = [e async for e in deps.state.query(START) if e.action == "stale-attest"]
    assert [(e.actor, e.outcome) for e in entries] == [("operator:op@contoso.com", "keep")]
    late = await post(attest, raw, "keep")  # the sponsor's link after the operator answered: changes nothing
    assert 400 <= late.status < 500
    keeps = [e async for e in deps.state.query(START) if e.action == "stale-attest" and e.outcome == "keep"]
    assert [e.actor for e in keeps] == ["operator:op@contoso.com"]
    assert (await operator_keep(attest, "stale-1", "operator:op@contoso.com")).status != "keep"  # once
    assert (await operator_keep(attest, "active", "operator:op@contoso.com")).status != "keep"  # not under review
