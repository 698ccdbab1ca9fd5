"""review_user_change on in-memory fakes: a conversion closes the guest's stale episode and (by setting) takes
the guest licence back, once; an identity drift is flagged to the admins once per change, never acted on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.graph import GraphError
from shared.domain.directory import DirectoryUser, ObjectIdentity, OutgoingMail, SubscribedSku
from shared.domain.licensing import LicensingPolicy
from shared.domain.stale import Stage, StageMemory
from shared.services.conversion import (
    CONVERSION,
    DRIFT,
    DRIFT_SENDING,
    WATCH_KIND,
    ConversionDeps,
    review_user_change,
)
from shared.services.licensing import Alerting, RetryLater
from shared.services.stale.deps import RECORD_KIND as STAGE_KIND
from tests.fakes.state import MemoryStateStore
from tests.unit.fakes_stale import FakeStaleGraph

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SKU = SubscribedSku("sku-g", "GUEST_ACCESS", enabled_units=10, consumed_units=3, capability_status="Enabled")
SKU_POLICY = LicensingPolicy(mode="sku", sku_part_number="GUEST_ACCESS", default_usage_location="US")
GROUP_POLICY = LicensingPolicy(mode="group", group_id="grp-lic")
HOST = ObjectIdentity("userPrincipalName", "contoso.onmicrosoft.com", "g1_fabrikam.com#EXT#@contoso.onmicrosoft.com")
PARTNER = ObjectIdentity("federated", "ExternalAzureAD", None)
OTP = ObjectIdentity("federated", "mail", "g1@fabrikam.com")
ADMINS = Alerting("guestwarden@contoso.com", ("secops@contoso.com",))


class Graph(FakeStaleGraph):
    """FakeStaleGraph with the identities read and a sendMail that can fail (each queued error once)."""

    def __init__(self, users: list[DirectoryUser]) -> None:
        super().__init__(users)
        self.skus = {SKU.sku_id: SKU}
        self.send_failures: list[BaseException] = []

    async def get_user(self, user_id: str, *, with_identities: bool = False) -> DirectoryUser | None:
        assert with_identities, "the review compares identities: it must select them"
        return self.users.get(user_id)

    async def send_mail(self, mail: OutgoingMail) -> None:
        if self.send_failures:
            raise self.send_failures.pop(0)
        await super().send_mail(mail)

    def set(self, **props: Any) -> None:
        self.users["g1"] = replace(self.users["g1"], **props)


def licensed_guest(*identities: ObjectIdentity, **props: Any) -> DirectoryUser:
    base: dict[str, Any] = {
        "id": "g1",
        "display_name": "Gina Guest",
        "mail": "g1@fabrikam.com",
        "user_type": "Guest",
        "external_user_state": "Accepted",
        "creation_type": "Invitation",
        "account_enabled": True,
        "assigned_sku_ids": frozenset({SKU.sku_id}),
        "direct_sku_ids": frozenset({SKU.sku_id}),
        "identities": identities or (PARTNER, HOST),
    }
    base.update(props)
    return DirectoryUser(**base)


def make(graph: Graph, policy: LicensingPolicy = SKU_POLICY, **kw: Any) -> ConversionDeps:
    async def no_sleep(_: float) -> None:
        return None

    return ConversionDeps(
        graph=graph,
        state=kw.pop("state", None) or MemoryStateStore(clock=lambda: NOW),
        policy=policy,
        alerting=kw.pop("alerting", ADMINS),
        clock=lambda: NOW,
        sleep=no_sleep,
        **kw,
    )


async def license_recorded(deps: ConversionDeps, actions: list[str]) -> None:
    """What license_guest leaves in the ledger when it licensed the guest."""
    claim = await deps.state.claim("license", "g1", deps.policy.target, owner="license-x", lease_seconds=60)
    await deps.state.complete(claim, {"status": "licensed", "actions": actions})


async def audit(deps: ConversionDeps) -> list[tuple[str, str, dict[str, Any]]]:
    since = NOW - timedelta(days=1)
    return [(e.action, e.outcome, dict(e.evidence)) async for e in deps.state.query(since)]


# --- conversions ---------------------------------------------------------------------------------------------


async def test_a_warned_guest_converted_is_audited_its_episode_closed_and_the_pending_disable_done() -> None:
    graph = Graph([licensed_guest()])
    deps = make(graph)
    assert (await review_user_change("g1", deps)).status == "remembered"  # first sight: no audit
    warned = StageMemory(Stage.WARNED, NOW - timedelta(days=3), run_id="run-1", episode="inactive-since:x")
    await deps.state.put(STAGE_KIND, "g1", warned.to_json(), etag=None)

    graph.set(user_type="Member")
    outcome = await review_user_change("g1", deps, "corr-9")

    assert outcome.status == "converted"
    assert await deps.state.get(STAGE_KIND, "g1") is None
    scope = f"warned:{warned.since.isoformat()}"
    pending = await deps.state.claim("stale-disable", "g1", scope, owner="stale-run", lease_seconds=60)
    assert pending.done and (pending.outcome or {})["result"] == "closed-by-conversion"
    assert (pending.outcome or {})["memory"] is None  # a run that finds it done forgets the episode too
    [(action, result, evidence)] = await audit(deps)
    assert (action, result) == (CONVERSION, "done")
    assert evidence["staleStage"]["stage"] == "warned"
    assert evidence["staleStage"]["closedSteps"] == [f"stale-disable {scope}", f"stale-reactivate {scope}"]
    assert evidence["guestLicence"] == {"given": False}  # no licence of ours in the ledger
    assert graph.writes == []  # nothing done to the account


async def test_a_duplicate_notification_records_the_conversion_once() -> None:
    graph = Graph([licensed_guest()])
    deps = make(graph)
    await review_user_change("g1", deps)
    graph.set(user_type="Member")
    assert (await review_user_change("g1", deps)).status == "converted"
    assert (await review_user_change("g1", deps)).status == "untracked"  # the record says Member now
    await deps.state.delete(WATCH_KIND, "g1")  # a worker died between the claim's completion and the record
    assert (await review_user_change("g1", deps)).status in ("already-done", "untracked")
    assert [a for a, _, _ in await audit(deps)] == [CONVERSION]


async def test_the_guest_licence_is_taken_back_only_with_the_setting() -> None:
    graph = Graph([licensed_guest()])
    kept = make(graph)
    await license_recorded(kept, ["set-usage-location", "assign-license"])
    await review_user_change("g1", kept)
    graph.set(user_type="Member")
    await review_user_change("g1", kept)
    [(_, _, evidence)] = await audit(kept)
    assert evidence["guestLicence"]["removed"] is False and "kept" in evidence["guestLicence"]["note"]
    assert graph.writes == []

    graph = Graph([licensed_guest()])
    removing = make(graph, remove_guest_license=True)
    await license_recorded(removing, ["assign-license"])
    await review_user_change("g1", removing)
    graph.set(user_type="Member")
    await review_user_change("g1", removing)
    [(_, _, evidence)] = await audit(removing)
    assert graph.writes == ["unlicense g1 sku-g"]
    assert evidence["guestLicence"]["removed"] is True
    assert evidence["guestLicence"]["taken"] == {"skus": ["sku-g"], "groups": []}


async def test_a_licence_someone_else_gave_or_one_already_gone_is_not_touched() -> None:
    graph = Graph([licensed_guest(user_type="Member")])
    deps = make(graph, remove_guest_license=True)
    await license_recorded(deps, ["already-in-licensing-group"])  # not ours
    await deps.state.put(STAGE_KIND, "g1", StageMemory(Stage.KEPT, NOW).to_json(), etag=None)
    await review_user_change("g1", deps)
    [(_, _, evidence)] = await audit(deps)
    assert evidence["guestLicence"] == {"given": False} and graph.writes == []

    graph = Graph([licensed_guest(user_type="Member", direct_sku_ids=frozenset())])
    deps = make(graph, remove_guest_license=True)
    await license_recorded(deps, ["assign-license"])  # ours, but an admin already took it
    await review_user_change("g1", deps)
    [(_, _, evidence)] = await audit(deps)
    assert evidence["guestLicence"]["removed"] is False and graph.writes == []


async def test_group_mode_takes_the_licensing_group_membership_back() -> None:
    graph = Graph([licensed_guest(user_type="Member")])
    graph.groups["grp-lic"] = {"g1", "someone"}
    deps = make(graph, GROUP_POLICY, remove_guest_license=True)
    await license_recorded(deps, ["add-to-licensing-group"])
    assert (await review_user_change("g1", deps)).status == "converted"  # known by its licence, no record
    assert graph.groups["grp-lic"] == {"someone"}
    [(_, _, evidence)] = await audit(deps)
    assert evidence["guestLicence"]["taken"] == {"skus": [], "groups": ["grp-lic"]}


async def test_a_member_we_never_knew_as_a_guest_is_left_alone() -> None:
    graph = Graph([licensed_guest(user_type="Member")])
    deps = make(graph, remove_guest_license=True)
    assert (await review_user_change("g1", deps)).status == "untracked"
    assert await audit(deps) == [] and graph.writes == []
    assert await deps.state.get(WATCH_KIND, "g1") is None
    # the look at the licensing ledger left it as it was: the licensing processor can still take it
    claim = await deps.state.claim("license", "g1", SKU_POLICY.target, owner="license-y", lease_seconds=60)
    assert claim.won


async def test_a_sweep_acting_on_the_guest_right_now_makes_the_conversion_wait() -> None:
    graph = Graph([licensed_guest()])
    deps = make(graph)
    await review_user_change("g1", deps)
    disabled = StageMemory(Stage.DISABLED, NOW - timedelta(days=2), we_disabled=True)
    await deps.state.put(STAGE_KIND, "g1", disabled.to_json(), etag=None)
    scope = f"disabled:{disabled.since.isoformat()}"
    held = await deps.state.claim("stale-delete", "g1", scope, owner="stale-run", lease_seconds=600)
    graph.set(user_type="Member", account_enabled=False)

    with pytest.raises(RetryLater):
        await review_user_change("g1", deps)
    assert await deps.state.get(STAGE_KIND, "g1") is not None  # nothing closed half-way
    await deps.state.release(held)

    assert (await review_user_change("g1", deps)).status == "converted"  # the redelivery
    [(_, _, evidence)] = await audit(deps)
    assert "stays disabled" in evidence["note"]


# --- identity drift ------------------------------------------------------------------------------------------


async def test_a_changed_identity_is_flagged_to_the_admins_once_and_nothing_is_done_to_the_guest() -> None:
    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph)
    await review_user_change("g1", deps)
    graph.set(identities=(OTP, HOST))

    outcome = await review_user_change("g1", deps)
    assert outcome.status == "flagged"
    assert (await review_user_change("g1", deps)).status == "unchanged"  # the next notification of the same state

    [mail] = graph.outbox
    assert mail.to == ("secops@contoso.com",) and mail.sender == "guestwarden@contoso.com"
    assert "Gina Guest" in mail.subject
    assert "federated/ExternalAzureAD" in mail.body and "federated/mail (g1@fabrikam.com)" in mail.body
    assert "guestwarden changed nothing" in mail.body
    [(action, result, evidence)] = await audit(deps)
    assert (action, result) == (DRIFT, "flagged")
    assert evidence["kind"] == "issuer-changed" and evidence["mail"] == "sent"
    assert graph.writes == []


async def test_a_redelivery_after_a_crash_before_the_record_does_not_mail_again() -> None:
    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph)
    await review_user_change("g1", deps)
    before = await deps.state.get(WATCH_KIND, "g1")
    assert before is not None
    graph.set(identities=(OTP, HOST))
    await review_user_change("g1", deps)
    await deps.state.put(WATCH_KIND, "g1", before.value, etag="*")  # as if the record write had been lost
    assert (await review_user_change("g1", deps)).status == "already-done"
    assert len(graph.outbox) == 1


async def test_without_recipients_the_drift_is_audited_only() -> None:
    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph, alerting=Alerting(None, ()))
    await review_user_change("g1", deps)
    graph.set(identities=(OTP, HOST))
    assert (await review_user_change("g1", deps)).status == "flagged"
    [(_, _, evidence)] = await audit(deps)
    assert graph.outbox == [] and evidence["mail"].startswith("not sent")


async def test_an_unknown_send_outcome_is_never_repeated_and_a_refusal_is_retried() -> None:
    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph)
    await review_user_change("g1", deps)
    graph.set(identities=(OTP, HOST))
    graph.send_failures.append(GraphError(503, "ServiceUnavailable", "try later"))
    assert (await review_user_change("g1", deps)).status == "flagged"
    [(_, _, evidence)] = await audit(deps)
    assert evidence["mail"].startswith("uncertain") and graph.outbox == []

    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph)
    await review_user_change("g1", deps)
    graph.set(identities=(OTP, HOST))
    graph.send_failures.append(GraphError(403, "ErrorAccessDenied", "Access is denied."))
    with pytest.raises(GraphError):
        await review_user_change("g1", deps)
    assert await deps.state.get(DRIFT_SENDING, "g1") is None
    assert (await review_user_change("g1", deps)).status == "flagged"  # the queue's redelivery
    assert len(graph.outbox) == 1
    assert [(a, r) for a, r, _ in await audit(deps)] == [(DRIFT, "failed"), (DRIFT, "flagged")]


async def test_a_worker_killed_while_mailing_leaves_the_flag_uncertain_not_resent() -> None:
    graph = Graph([licensed_guest(PARTNER, HOST)])
    deps = make(graph)
    await review_user_change("g1", deps)
    graph.set(identities=(OTP, HOST))

    class Killed(BaseException):
        pass

    graph.send_failures.append(Killed())
    with pytest.raises(Killed):
        await review_user_change("g1", deps)
    assert (await review_user_change("g1", deps)).status == "flagged"
    [(_, _, evidence)] = await audit(deps)
    assert evidence["mail"].startswith("uncertain") and graph.outbox == []
