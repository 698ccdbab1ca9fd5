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
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.domain.directory import OutgoingMail
from shared.domain.risk import Ticket
from shared.ports.tickets import SinkKind, TicketSink, TicketSinkError
from shared.settings.partners import Partner as Partner  # the directory is validated with the settings
from shared.settings.partners import PartnerDirectory as PartnerDirectory
from shared.settings.partners import PartnerDirectoryError as PartnerDirectoryError
from shared.settings.partners import SinkConfig as SinkConfig
from shared.settings.partners import load_partner_directory as load_partner_directory

SIGNATURE_HEADER = "X-Guestwarden-Signature"
TIMESTAMP_HEADER = "X-Guestwarden-Timestamp"


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


# --- the partner directory (validated with the settings: shared/settings/partners.py) -------------------------


def build_sink(
    config: SinkConfig,
    http: httpx.AsyncClient,
    sender: str,
    send: Callable[[OutgoingMail], Awaitable[None]],
    render: Callable[[Ticket], str],
) -> TicketSink:
    if config.kind == "webhook":
        assert config.url
        return WebhookSink(config.url, config.signing_key(), http)
    if config.kind == "servicenow":
        assert config.url and config.username and config.password
        auth = (config.username.get_secret_value(), config.password.get_secret_value())
        return ServiceNowSink(config.url, auth, http, render, config.assignment_group)
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
