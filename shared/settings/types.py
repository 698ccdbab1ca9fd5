"""Reusable annotated types for settings: each says what it expects once, for every setting that uses it.

Validators raise ValueError("expected ..."); `load_settings` prefixes the app-setting name, so an operator reads
`LICENSE_GROUP_ID: expected a GUID (got 'sales')`. Secret types never show their value (see `load_settings`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr

T = TypeVar("T")

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_MAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*")


def is_loopback_url(url: str) -> bool:
    """True for http(s)://localhost, 127.0.0.0/8 or [::1]: the only hosts plain http is allowed to."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _guid(value: str) -> str:
    if not _GUID.fullmatch(value):
        raise ValueError("expected a GUID (an object or client id)")
    return value


def _domain(value: str) -> str:
    value = value.lower()
    if not _DOMAIN.fullmatch(value):
        raise ValueError("expected a domain name such as fabrikam.com")
    return value


def _mailbox(value: str) -> str:
    if not _MAIL.fullmatch(value):
        raise ValueError("expected an e-mail address such as guestwarden@contoso.com")
    return value


def _country(value: str) -> str:
    value = value.upper()
    if not _COUNTRY.fullmatch(value):
        raise ValueError("expected an ISO 3166 alpha-2 country code such as US or DE")
    return value


def _ncrontab(value: str) -> str:
    from croniter import croniter

    if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
        raise ValueError("expected a six-field NCRONTAB expression, seconds first, e.g. '0 */15 * * * *'")
    return value


def _domain_map(value: object) -> object:
    if not isinstance(value, str):
        return value
    mapping: dict[str, str] = {}
    for pair in (p.strip() for p in value.split(",") if p.strip()):
        domain, sep, country = pair.partition("=")
        domain, country = domain.strip().lower(), country.strip().upper()
        if not sep or not _DOMAIN.fullmatch(domain) or not _COUNTRY.fullmatch(country):
            raise ValueError(f"expected domain=CC pairs such as fabrikam.com=DE, not {pair!r}")
        mapping[domain] = country
    return mapping


def _graph_root(value: str) -> str:
    value = value.rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("expected an absolute URL such as https://graph.microsoft.com/v1.0")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise ValueError("plain http is allowed only for a loopback simulator (127.0.0.1, localhost)")
    if not parts.path.strip("/"):
        raise ValueError("expected the version segment in the path, e.g. .../v1.0")
    return value


def _https_secret_url(value: SecretStr) -> SecretStr:
    url = value.get_secret_value()
    parts = urlsplit(url)
    if (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and is_loopback_url(url)):
        return value
    raise ValueError("expected an https URL (Graph only calls https; plain http only for a loopback host)")


def _client_state(value: SecretStr) -> SecretStr:
    if not 16 <= len(value.get_secret_value()) <= 128:
        raise ValueError("expected 16-128 characters (Graph allows at most 128; short secrets are guessable)")
    return value


def _signing_key(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 32:
        raise ValueError("expected at least 32 characters (e.g. `openssl rand -base64 48`): a short key is guessable")
    return value


def _signing_keys(value: SecretStr) -> SecretStr:
    for key in value.get_secret_value().split(","):
        if key.strip():
            _signing_key(SecretStr(key.strip()))
    return value


def _public_origin(value: str) -> str:
    parts = urlsplit(value)
    if not ((parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and is_loopback_url(value))):
        raise ValueError("expected an https origin such as https://<app>.azurewebsites.net (http only on loopback)")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("expected the origin only (scheme and host), without a path: links add /api/attest")
    return value.rstrip("/")


def _http_endpoint(value: str) -> str:
    if urlsplit(value).scheme not in ("https", "http"):
        raise ValueError("expected a URL such as https://<account>.table.core.windows.net")
    return value


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.hostname or (parts.scheme != "https" and not (parts.scheme == "http" and is_loopback_url(value))):
        raise ValueError("expected an absolute https URL such as https://myapps.microsoft.com/?tenantid=<tenant>")
    return value


def _host_name(value: str) -> str:
    if "://" in value or "/" in value or "." not in value:
        raise ValueError("expected a host name such as <name>.servicebus.windows.net (no scheme)")
    return value


def _blob_account_url(value: str) -> str:
    parts = urlsplit(value)
    plain_ok = parts.scheme == "http" and is_loopback_url(value)
    if not parts.hostname or parts.query or (parts.scheme != "https" and not plain_ok):
        raise ValueError("expected https://<account>.blob.core.windows.net (plain http only for a loopback emulator)")
    return value


def _blob_connection(value: SecretStr) -> SecretStr:
    pairs = (part.split("=", 1) for part in value.get_secret_value().split(";") if "=" in part)
    keys = {key.strip().lower(): val.strip().lower() for key, val in pairs}
    if not ({"accountname", "blobendpoint"} & keys.keys() or keys.get("usedevelopmentstorage") == "true"):
        raise ValueError(
            "expected a Blob Storage connection string with AccountName=... or BlobEndpoint=... "
            "(or UseDevelopmentStorage=true)"
        )
    return value


def _container(value: str) -> str:
    # Azure's container naming rules (shared.adapters.reports.CONTAINER_NAME).
    if not _CONTAINER.fullmatch(value):
        raise ValueError(
            "expected a container name: 3-63 lower-case letters, digits and single hyphens, starting and "
            "ending with a letter or digit"
        )
    return value


Guid = Annotated[str, AfterValidator(_guid)]
"""An Entra object or client id."""
DomainName = Annotated[str, AfterValidator(_domain)]
"""A DNS domain, lower-cased."""
Mailbox = Annotated[str, AfterValidator(_mailbox)]
"""One e-mail address (a UPN for a sender mailbox)."""
CountryCode = Annotated[str, AfterValidator(_country)]
"""ISO 3166 alpha-2, upper-cased."""
NCrontab = Annotated[str, AfterValidator(_ncrontab)]
"""A Functions timer schedule: six fields, seconds first (checked with croniter)."""
CommaList = Annotated[tuple[T, ...], BeforeValidator(_split_commas)]
"""`a, b,c` -> ("a", "b", "c"), blanks dropped; each item validated as T."""
CommaSet = Annotated[frozenset[T], BeforeValidator(_split_commas)]
"""Like CommaList, unordered and without duplicates."""
DomainCountryMap = Annotated[dict[str, str], BeforeValidator(_domain_map)]
"""`fabrikam.com=DE,tailspin.co.uk=GB`."""
GraphRoot = Annotated[str, AfterValidator(_graph_root)]
"""Graph's root with its version segment, https (plain http only on loopback), no trailing slash."""
HttpEndpoint = Annotated[str, AfterValidator(_http_endpoint)]
HostName = Annotated[str, AfterValidator(_host_name)]
BlobAccountUrl = Annotated[str, AfterValidator(_blob_account_url)]
ContainerName = Annotated[str, AfterValidator(_container)]
SecretHttpsUrl = Annotated[SecretStr, AfterValidator(_https_secret_url)]
"""A URL that carries a key (a function key): https, never echoed."""
ClientState = Annotated[SecretStr, AfterValidator(_client_state)]
"""Graph's clientState: 16-128 characters, never echoed."""
BlobConnectionString = Annotated[SecretStr, AfterValidator(_blob_connection)]
SigningKey = Annotated[SecretStr, AfterValidator(_signing_key)]
"""An HMAC key: at least 32 characters, never echoed."""
SigningKeys = Annotated[SecretStr, AfterValidator(_signing_keys)]
"""Comma-separated HMAC keys, each at least 32 characters, never echoed."""
PublicOrigin = Annotated[str, AfterValidator(_public_origin)]
"""An https origin (scheme and host, no path); plain http only on loopback."""
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
"""An absolute https URL (path and query allowed); plain http only on loopback."""
