"""Home-tenant tickets: the partner directory and the sinks behind one small port (`TicketSink`).

The partner directory is a JSON file (RISK_PARTNER_DIRECTORY; schema in docs/risk-blocked-guests.md) that maps a
home tenant id or domain to a sink, with a required default sink for partners it does not list. Sinks:

* `webhook`: POST the ticket as JSON to an https URL, signed with HMAC-SHA256 over "<timestamp>.<body>"
  (headers X-Guestwarden-Timestamp, X-Guestwarden-Signature: sha256=<hex>), Idempotency-Key = incident id.
* `servicenow`: POST /api/now/table/incident on the partner's instance (basic auth), correlation_id =
  incident id; the ticket id is the incident's `number`.
* `email`: a plain-text mail to the partner's security contact from MAIL_SENDER.

Security: every URL comes from this file (configuration), never from sign-in or Graph data; it must be https
(plain http only for a loopback host, as for Graph), without credentials in it, and redirects are not
followed. Secrets are never in the file: it names the app settings that hold them (`secretSetting`,
`usernameSetting`, `passwordSetting`), resolved once at start, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.domain.directory import OutgoingMail
from shared.domain.risk import Ticket, is_tenant_id
from shared.ports.tickets import SinkKind, TicketSink, TicketSinkError
from shared.settings import is_loopback_url

SIGNATURE_HEADER = "X-Guestwarden-Signature"
TIMESTAMP_HEADER = "X-Guestwarden-Timestamp"


class PartnerDirectoryError(ValueError):
    """The partner directory file is missing, unreadable or invalid; names every problem."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value a receiver recomputes: sha256=<hex of HMAC-SHA256(secret, ts + "." + body)>."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookSink(TicketSink):
    kind: SinkKind = "webhook"

    def __init__(self, url: str, secret: bytes, http: httpx.AsyncClient) -> None:
        self._url, self._secret, self._http = url, secret, http

    async def open(self, ticket: Ticket) -> str:
        body = json.dumps(ticket.to_json(), sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "Idempotency-Key": ticket.incident_id,
        }
        response = await _post(self._http, self._url, content=body, headers=headers)
        reference = _json(response).get("id")
        return str(reference) if isinstance(reference, str | int) else f"webhook:{ticket.incident_id}"


class ServiceNowSink(TicketSink):
    kind: SinkKind = "servicenow"

    def __init__(
        self,
        instance_url: str,
        auth: tuple[str, str],
        http: httpx.AsyncClient,
        render: Callable[[Ticket], str],
        assignment_group: str | None = None,
    ) -> None:
        self._url = instance_url.rstrip("/") + "/api/now/table/incident"
        self._auth, self._http, self._render, self._group = auth, http, render, assignment_group

    async def open(self, ticket: Ticket) -> str:
        record: dict[str, Any] = {
            "short_description": ticket.title,
            "description": self._render(ticket),
            "correlation_id": ticket.incident_id,
            "correlation_display": "guestwarden",
            "category": "security",
            "urgency": "2",
            "impact": "3",
        }
        if self._group:
            record["assignment_group"] = self._group
        response = await _post(
            self._http, self._url, json=record, auth=self._auth, headers={"Accept": "application/json"}
        )
        result = _json(response).get("result")
        number = result.get("number") if isinstance(result, dict) else None
        if not isinstance(number, str) or not number:
            raise TicketSinkError("ServiceNow answered without result.number")
        return number


class EmailSink(TicketSink):
    kind: SinkKind = "email"

    def __init__(
        self,
        to: tuple[str, ...],
        sender: str,
        send: Callable[[OutgoingMail], Awaitable[None]],
        render: Callable[[Ticket], str],
    ) -> None:
        self._to, self._sender, self._send, self._render = to, sender, send, render

    async def open(self, ticket: Ticket) -> str:
        mail = OutgoingMail(self._sender, self._to, ticket.title, self._render(ticket), body_type="Text")
        try:
            await self._send(mail)
        except Exception as exc:
            raise TicketSinkError(f"mail to the partner's security contact failed: {exc}") from exc
        return f"mail:{ticket.incident_id}"


async def _post(http: httpx.AsyncClient, url: str, **kw: Any) -> httpx.Response:
    try:
        response = await http.post(url, **kw)
    except httpx.HTTPError as exc:
        raise TicketSinkError(f"{urlsplit(url).hostname}: {type(exc).__name__}") from exc
    if not response.is_success:
        raise TicketSinkError(f"{urlsplit(url).hostname} answered {response.status_code}")
    return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- the partner directory ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SinkConfig:
    kind: SinkKind
    url: str | None = None
    secret: bytes = field(default=b"", repr=False)
    username: str | None = None
    password: str = field(default="", repr=False)
    assignment_group: str | None = None
    to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Partner:
    name: str
    sink: SinkConfig


@dataclass(frozen=True, slots=True)
class PartnerDirectory:
    by_tenant: Mapping[str, Partner]
    by_domain: Mapping[str, Partner]
    default: Partner

    def resolve(self, tenant_id: str | None, domain: str | None) -> Partner:
        """The tenant id decides first, then the home tenant's default domain (from Graph, never the guest's
        own mail domain, which need not belong to the tenant); else the default sink."""
        if tenant_id and tenant_id.lower() in self.by_tenant:
            return self.by_tenant[tenant_id.lower()]
        if domain and domain.lower() in self.by_domain:
            return self.by_domain[domain.lower()]
        return self.default


def load_partner_directory(path: Path, env: Mapping[str, str]) -> PartnerDirectory:
    """Read and validate the file; raise one PartnerDirectoryError naming every problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PartnerDirectoryError(f"RISK_PARTNER_DIRECTORY {path}: cannot read it as JSON ({exc})") from exc
    problems: list[str] = []
    if not isinstance(document, dict):
        raise PartnerDirectoryError(f"RISK_PARTNER_DIRECTORY {path}: expected a JSON object")
    by_tenant: dict[str, Partner] = {}
    by_domain: dict[str, Partner] = {}
    for index, item in enumerate(document.get("partners") or []):
        where = f"partners[{index}]"
        partner = _partner(item, where, env, problems)
        if partner is None:
            continue
        tenant = item.get("tenantId")
        if tenant is not None and not is_tenant_id(tenant):
            problems.append(f"{where}.tenantId: expected a GUID")
        elif tenant:
            by_tenant[str(tenant).lower()] = partner
        for domain in item.get("domains") or []:
            by_domain[str(domain).lower()] = partner
        if not tenant and not item.get("domains"):
            problems.append(f"{where}: needs a tenantId or domains")
    default = _partner({"name": "default", "sink": document.get("default")}, "default", env, problems)
    if problems or default is None:
        lines = "\n".join(f"  - {p}" for p in problems or ["default: a default sink is required"])
        raise PartnerDirectoryError(f"RISK_PARTNER_DIRECTORY {path} needs attention:\n{lines}")
    return PartnerDirectory(by_tenant, by_domain, default)


def _partner(item: object, where: str, env: Mapping[str, str], problems: list[str]) -> Partner | None:
    if not isinstance(item, dict) or not isinstance(item.get("sink"), dict):
        problems.append(f"{where}: expected an object with a 'sink' object")
        return None
    sink = _sink(item["sink"], f"{where}.sink", env, problems)
    return Partner(str(item.get("name") or where), sink) if sink else None


def _sink(raw: dict[str, Any], where: str, env: Mapping[str, str], problems: list[str]) -> SinkConfig | None:
    kind = raw.get("type")
    before = len(problems)
    if kind == "webhook":
        url = _url(raw.get("url"), f"{where}.url", problems)
        secret = _secret(raw.get("secretSetting"), f"{where}.secretSetting", env, problems)
        config = SinkConfig("webhook", url=url, secret=secret.encode())
    elif kind == "servicenow":
        url = _url(raw.get("instanceUrl"), f"{where}.instanceUrl", problems)
        user = _secret(raw.get("usernameSetting"), f"{where}.usernameSetting", env, problems)
        password = _secret(raw.get("passwordSetting"), f"{where}.passwordSetting", env, problems)
        group = raw.get("assignmentGroup")
        config = SinkConfig("servicenow", url=url, username=user, password=password, assignment_group=group)
    elif kind == "email":
        to = tuple(str(a) for a in raw.get("to") or [])
        if not to or not all("@" in a and "\n" not in a and "," not in a for a in to):
            problems.append(f"{where}.to: expected a list of e-mail addresses")
        config = SinkConfig("email", to=to)
    else:
        problems.append(f"{where}.type: expected webhook, servicenow or email, got {kind!r}")
        return None
    return config if len(problems) == before else None


def _url(value: object, where: str, problems: list[str]) -> str:
    url = str(value or "")
    parts = urlsplit(url)
    if parts.username or parts.password:
        problems.append(f"{where}: must not carry credentials (name a setting instead)")
    elif (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and is_loopback_url(url)):
        return url
    else:
        problems.append(f"{where}: expected an https URL (plain http only for a loopback host)")
    return ""


def _secret(name: object, where: str, env: Mapping[str, str], problems: list[str]) -> str:
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: name the app setting that holds the value")
        return ""
    value = env.get(name, "")
    if not value:
        problems.append(f"{where}: app setting {name} is not set")
    return value


def build_sink(
    config: SinkConfig,
    http: httpx.AsyncClient,
    sender: str,
    send: Callable[[OutgoingMail], Awaitable[None]],
    render: Callable[[Ticket], str],
) -> TicketSink:
    if config.kind == "webhook":
        assert config.url
        return WebhookSink(config.url, config.secret, http)
    if config.kind == "servicenow":
        assert config.url and config.username
        return ServiceNowSink(config.url, (config.username, config.password), http, render, config.assignment_group)
    return EmailSink(config.to, sender, send, render)


def sink_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    """One client for the sinks: no redirects (a redirect would let a sink's host send us anywhere)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds), follow_redirects=False, trust_env=False)


class PartnerSinks:
    """The partner directory with its sinks built: `resolve` answers (partner, sink) for a home tenant."""

    def __init__(
        self,
        directory: PartnerDirectory,
        http: httpx.AsyncClient,
        sender: str,
        send: Callable[[OutgoingMail], Awaitable[None]],
        render: Callable[[Ticket], str],
    ) -> None:
        self._directory = directory
        self._http, self._sender, self._send, self._render = http, sender, send, render

    def resolve(self, tenant_id: str | None, domain: str | None) -> tuple[Partner, TicketSink]:
        partner = self._directory.resolve(tenant_id, domain)
        return partner, build_sink(partner.sink, self._http, self._sender, self._send, self._render)
