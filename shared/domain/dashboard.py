"""Who may use the operator dashboard, and the anti-forgery code of its forms. Pure: no I/O.

In Azure, App Service Authentication (Entra ID) signs the operator in before a request reaches the app and
passes the principal in the `X-MS-CLIENT-PRINCIPAL` header: base64 of JSON
`{"auth_typ": ..., "name_typ": ..., "role_typ": ..., "claims": [{"typ": ..., "val": ...}, ...]}`. The app
roles of guestwarden's app registration arrive as claims of type `roles` (or role_typ). Reading needs
GuestWarden.Reader, acting needs GuestWarden.Operator (an operator may read too).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from shared.domain.attestation import confirm_code, confirm_ok

READER = "GuestWarden.Reader"
OPERATOR = "GuestWarden.Operator"
PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL_BYTES = 16384
"""Larger than any principal App Service sends (it carries the token's claims): refused as malformed."""

_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_NAME_CLAIMS = ("preferred_username", "name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in person: `id` is stable (Entra object id), `name` is for display and the audit log."""

    id: str
    name: str
    roles: frozenset[str]

    @property
    def can_read(self) -> bool:
        return READER in self.roles or OPERATOR in self.roles

    @property
    def can_act(self) -> bool:
        return OPERATOR in self.roles

    @property
    def actor(self) -> str:
        """The audit log's actor for what this operator does through the dashboard."""
        return f"operator:{self.name}"


def parse_client_principal(header: str) -> Principal | None:
    """The principal App Service Authentication passed, or None when the header is absent or malformed."""
    if not header or len(header) > MAX_PRINCIPAL_BYTES:
        return None
    try:
        document = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return None
    claims = [
        (str(c["typ"]), str(c["val"])) for c in document["claims"] if isinstance(c, dict) and "typ" in c and "val" in c
    ]
    role_types = {*_ROLE_CLAIMS, str(document.get("role_typ") or "roles")}
    name_types = (str(document.get("name_typ") or ""), *_NAME_CLAIMS)
    roles = frozenset(value for typ, value in claims if typ in role_types)
    name = next((value for wanted in name_types for typ, value in claims if typ == wanted and value), "")
    object_id = next((value for wanted in _ID_CLAIMS for typ, value in claims if typ == wanted and value), "")
    if not (name or object_id):
        return None
    return Principal(object_id or name, name or object_id, roles)


def client_principal_header(name: str, roles: tuple[str, ...] | list[str], object_id: str = "") -> str:
    """The header App Service would send for this person (the development sign-in and tests)."""
    claims = [{"typ": "preferred_username", "val": name}, *({"typ": "roles", "val": r} for r in roles)]
    if object_id:
        claims.append({"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": object_id})
    document = {"auth_typ": "aad", "name_typ": "preferred_username", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(document).encode()).decode()


def dev_principal(setting: str) -> Principal:
    """DASHBOARD_DEV_SIGNIN `<name>:<role>[+<role>]` as a principal (no roles after the colon: none)."""
    name, _, roles = setting.partition(":")
    return Principal(f"dev:{name.strip()}", name.strip() or "developer", frozenset(r for r in roles.split("+") if r))


def _subject(principal: Principal, action: str, target: str) -> str:
    return f"dashboard\x1f{principal.id}\x1f{action}\x1f{target}"


def form_code(key: str, principal: Principal, action: str, target: str, shown: datetime) -> str:
    """The anti-forgery field of a confirm page: bound to who saw it, what it does and to what, and when (the
    attestation page's code, shared.domain.attestation.confirm_code, over this subject)."""
    return confirm_code(key, _subject(principal, action, target), shown)


def form_code_ok(key: str, code: str, principal: Principal, action: str, target: str, now: datetime) -> bool:
    """Constant-time check that `code` came from this principal's confirm page for this action and target, shown
    within the confirmation window."""
    return confirm_ok(code, _subject(principal, action, target), (key,), now)


class Refused(Exception):
    """A dashboard request that is refused: the page answers `status` (4xx/5xx) and shows `detail` (as text)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
