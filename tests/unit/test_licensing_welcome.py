"""The welcome mail of license_guest on in-memory fakes: once per guest, only for guests this processor licensed,
never twice after an unknown outcome, finished by a redelivery after a crash; the templates escaped and
overridable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.graph import GraphError
from shared.adapters.templates import LicensingTemplates
from shared.domain.directory import DirectoryUser, ObjectIdentity, OutgoingMail
from shared.domain.licensing import LicensingPolicy
from shared.ports.templates import RenderedNotice
from shared.services.licensing import WELCOME_SENDING, LicensingDeps, WelcomeConfig, license_guest
from tests.unit.fakes import FakeGraph
from tests.unit.test_licensing_service import NOW, accepted, make_deps, sku

TENANT = "2f4a9c3e-51b7-4d8a-9c1e-6b0d3a7f5e21"
LINK = f"https://myapps.microsoft.com/?tenantid={TENANT}"
HOST = ObjectIdentity("userPrincipalName", "contoso.onmicrosoft.com", "g1_gmail.com#EXT#@contoso.onmicrosoft.com")


class Killed(BaseException):
    """A worker killed mid-step (what a host shutdown or an out-of-memory kill looks like to the code)."""


class MailGraph(FakeGraph):
    """FakeGraph whose sendMail can fail: each queued exception is raised by one call, before anything is sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_failures: list[BaseException] = []

    async def send_mail(self, mail: OutgoingMail) -> None:
        if self.send_failures:
            self.calls.append(("send_mail", mail.sender))
            raise self.send_failures.pop(0)
        await super().send_mail(mail)


def otp_guest(user_id: str = "g1", **props: object) -> DirectoryUser:
    identities = (ObjectIdentity("federated", "mail", f"{user_id}@gmail.com"), HOST)
    base: dict[str, object] = {
        "mail": f"{user_id}@gmail.com",
        "display_name": "Jane Gmail",
        "user_principal_name": f"{user_id}_gmail.com#EXT#@contoso.onmicrosoft.com",
        "identities": identities,
    }
    base.update(props)
    return accepted(user_id, **base)


def welcome(body_format: str = "html", templates: Any = None) -> WelcomeConfig:
    return WelcomeConfig(
        templates=templates or LicensingTemplates(),
        sender="guestwarden@contoso.com",
        tenant_id=TENANT,
        organisation="Contoso",
        body_format=body_format,  # type: ignore[arg-type]
    )


async def trail(deps: LicensingDeps, action: str = "welcome") -> list[str]:
    from datetime import timedelta

    return [e.outcome async for e in deps.state.query(NOW - timedelta(days=1), action=action)]


async def test_a_licensed_guest_is_welcomed_once_with_its_path_and_the_tenant_link() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    deps = make_deps(graph, welcome=welcome())
    outcome = await license_guest("g1", deps)
    assert (outcome.status, outcome.welcome) == ("licensed", "sent")
    [mail] = graph.outbox
    assert mail.to == ("g1@gmail.com",)
    assert mail.sender == "guestwarden@contoso.com"
    assert mail.body_type == "HTML"
    assert mail.subject == "Welcome to Contoso: how to sign in"
    assert f'href="{LINK}"' in mail.body
    assert "one-time code" in mail.body
    assert "Sign in to an organization" in mail.body and "contoso.onmicrosoft.com" in mail.body
    assert await trail(deps) == ["sent"]
    # duplicates (notification copies, the delta pass) mail nothing more
    for _ in range(3):
        again = await license_guest("g1", deps)
        assert again.status == "already-done"
        assert again.welcome == "already-done"
    assert len(graph.outbox) == 1


@pytest.mark.parametrize(
    ("identity", "says", "not_says"),
    [
        (ObjectIdentity("federated", "MicrosoftAccount", None), "Microsoft account", "one-time code"),
        (ObjectIdentity("federated", "ExternalAzureAD", None), "at gmail.com, the one", "one-time code"),
        (ObjectIdentity("federated", "google.com", "1234"), "Google account", "work account"),
    ],
)
async def test_each_identity_gets_its_own_instructions(identity: ObjectIdentity, says: str, not_says: str) -> None:
    graph = MailGraph([otp_guest(identities=(identity, HOST))], [sku()])
    await license_guest("g1", make_deps(graph, welcome=welcome()))
    [mail] = graph.outbox
    assert says in mail.body
    assert not_says not in mail.body
    assert LINK in mail.body


async def test_without_the_setting_nothing_is_mailed_and_identities_are_not_read() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    deps = make_deps(graph)
    outcome = await license_guest("g1", deps)
    assert (outcome.status, outcome.welcome) == ("licensed", "")
    assert graph.outbox == []
    assert await trail(deps) == []


async def test_guests_licensed_before_the_setting_was_on_are_never_mailed() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    state_deps = make_deps(graph)
    assert (await license_guest("g1", state_deps)).status == "licensed"
    later = replace(state_deps, welcome=welcome())  # the operator turns LICENSE_WELCOME_MAIL on
    again = await license_guest("g1", later)
    assert (again.status, again.welcome) == ("already-done", "")
    assert graph.outbox == []


async def test_a_guest_licensed_by_someone_else_is_not_welcomed() -> None:
    graph = MailGraph([otp_guest(assigned_sku_ids=frozenset({"sku-g"}))], [sku()])
    outcome = await license_guest("g1", make_deps(graph, welcome=welcome()))
    assert (outcome.status, outcome.welcome) == ("skipped", "")
    assert graph.outbox == []


async def test_group_mode_welcomes_only_a_membership_it_added() -> None:
    policy = LicensingPolicy(mode="group", group_id="grp-1")
    graph = MailGraph([otp_guest("g1"), otp_guest("g2")])
    graph.groups["grp-1"] = {"g2"}  # already a member: someone else licensed g2
    deps = make_deps(graph, policy, welcome=welcome())
    assert (await license_guest("g1", deps)).welcome == "sent"
    assert (await license_guest("g2", deps)).welcome == ""
    assert [m.to for m in graph.outbox] == [("g1@gmail.com",)]


async def test_a_timeout_or_5xx_is_uncertain_and_never_sent_again() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    graph.send_failures.append(GraphError(None, "timeout", "the request timed out"))
    deps = make_deps(graph, welcome=welcome())
    outcome = await license_guest("g1", deps)
    assert (outcome.status, outcome.welcome) == ("licensed", "uncertain")
    assert (await license_guest("g1", deps)).welcome == "already-done"
    assert graph.count("send_mail") == 1
    assert await trail(deps) == ["uncertain"]
    assert await deps.state.get(WELCOME_SENDING, "g1") is None

    graph2 = MailGraph([otp_guest()], [sku()])
    graph2.send_failures.append(GraphError(503, "ServiceUnavailable", "try later"))
    deps2 = make_deps(graph2, welcome=welcome())
    assert (await license_guest("g1", deps2)).welcome == "uncertain"
    assert (await license_guest("g1", deps2)).welcome == "already-done"
    assert graph2.count("send_mail") == 1


async def test_a_refusal_is_audited_raised_and_retried_by_the_next_delivery() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    graph.send_failures.append(GraphError(403, "ErrorAccessDenied", "Access is denied."))
    deps = make_deps(graph, welcome=welcome())
    with pytest.raises(GraphError):
        await license_guest("g1", deps)  # the licence is done; the message fails so the queue delivers it again
    assert "sku-g" in graph.users["g1"].assigned_sku_ids
    again = await license_guest("g1", deps)
    assert (again.status, again.welcome) == ("already-done", "sent")
    assert len(graph.outbox) == 1
    assert graph.count("assign_license") == 1
    assert await trail(deps) == ["failed", "sent"]


async def test_a_worker_killed_while_sending_leaves_it_uncertain_never_mailed_twice() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    graph.send_failures.append(Killed())
    deps = make_deps(graph, welcome=welcome())
    with pytest.raises(Killed):
        await license_guest("g1", deps)
    assert await deps.state.get(WELCOME_SENDING, "g1") is not None  # the write-ahead marker survived
    again = await license_guest("g1", deps)
    assert (again.status, again.welcome) == ("already-done", "uncertain")
    assert graph.count("send_mail") == 1
    assert graph.outbox == []
    assert await trail(deps) == ["uncertain"]


class CrashOnce:
    """Templates whose first render dies (a worker killed after the licence, before the welcome was sent)."""

    def __init__(self) -> None:
        self.real = LicensingTemplates()
        self.crashed = False

    def welcome(self, context: Mapping[str, Any]) -> RenderedNotice:
        if not self.crashed:
            self.crashed = True
            raise Killed()
        return self.real.welcome(context)


async def test_a_worker_killed_before_sending_is_finished_by_the_redelivery() -> None:
    graph = MailGraph([otp_guest()], [sku()])
    deps = make_deps(graph, welcome=welcome(templates=CrashOnce()))
    with pytest.raises(Killed):
        await license_guest("g1", deps)
    assert graph.outbox == []
    again = await license_guest("g1", deps)
    assert (again.status, again.welcome) == ("already-done", "sent")
    assert len(graph.outbox) == 1
    assert graph.count("assign_license") == 1


async def test_a_guest_without_any_address_is_recorded_and_never_mailed() -> None:
    graph = MailGraph([otp_guest(mail=None, other_mails=())], [sku()])
    deps = make_deps(graph, welcome=welcome())
    assert (await license_guest("g1", deps)).welcome == "skipped"
    assert graph.outbox == []
    assert await trail(deps) == ["skipped"]


async def test_html_escapes_what_outsiders_write_and_text_format_sends_the_text_body() -> None:
    hostile = '<img src=x onerror="alert(1)">\u202eJane'
    graph = MailGraph([otp_guest(display_name=hostile)], [sku()])
    await license_guest("g1", make_deps(graph, welcome=welcome()))
    [mail] = graph.outbox
    assert "<img" not in mail.body and "&lt;img src=x" in mail.body

    graph = MailGraph([otp_guest(display_name=hostile)], [sku()])
    await license_guest("g1", make_deps(graph, welcome=welcome("text")))
    [mail] = graph.outbox
    assert mail.body_type == "Text"
    assert "<p>" not in mail.body and LINK in mail.body and "one-time code" in mail.body


def test_an_override_folder_wins_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "welcome.subject.txt").write_text("Hi {{ guest_name }}\r\nfrom {{ organisation }}")
    rendered = LicensingTemplates(tmp_path).welcome(
        {
            "guest_name": "Jane",
            "organisation": "Contoso",
            "path": "microsoft-account",
            "my_apps_url": LINK,
            "host_domain": "contoso.onmicrosoft.com",
            "sign_in_name": "jane@outlook.com",
            "home_domain": "outlook.com",
        }
    )
    assert rendered.subject == "Hi Jane from Contoso"  # one line, whatever the override
    assert "Microsoft account" in rendered.html and "Microsoft account" in rendered.text


def test_a_broken_override_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "welcome.html").write_text("{% if %}")
    with pytest.raises(Exception, match="Expected an expression"):
        LicensingTemplates(tmp_path)
