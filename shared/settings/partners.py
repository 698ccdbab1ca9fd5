"""The risk flows' partner directory (RISK_PARTNER_DIRECTORY): which ticket sink serves which home tenant.

A JSON file (schema in docs/risk-blocked-guests.md) validated by these models when settings load: every URL https
(plain http only for a loopback host), no credentials in a URL, and the secrets not in the file but named by the
app settings that hold them (`secretSetting`, `usernameSetting`, `passwordSetting`), resolved from the same
settings at load and typed as secrets. One PartnerDirectoryError names every problem, never a secret's value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.domain.risk import is_tenant_id
from shared.settings.types import is_loopback_url

SETTING = "RISK_PARTNER_DIRECTORY"


class PartnerDirectoryError(ValueError):
    """The partner directory file is missing, unreadable or invalid; names every problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


_SETTING_OF = {"secret": "webhook", "username": "servicenow", "password": "servicenow"}
_URL_OF = {"webhook_url": "webhook", "instance_url": "servicenow"}


class SinkConfig(_Model):
    """One ticket sink: `webhook` (url + signing secret), `servicenow` (instance + basic auth) or `email` (to)."""

    kind: Literal["webhook", "servicenow", "email"] = Field(alias="type")
    webhook_url: str | None = Field(None, alias="url", validate_default=True)
    instance_url: str | None = Field(None, alias="instanceUrl", validate_default=True)
    secret: SecretStr | None = Field(None, alias="secretSetting", validate_default=True)
    """The webhook's HMAC signing key (the value of the app setting `secretSetting` names)."""
    username: SecretStr | None = Field(None, alias="usernameSetting", validate_default=True)
    password: SecretStr | None = Field(None, alias="passwordSetting", validate_default=True)
    assignment_group: str | None = Field(None, alias="assignmentGroup")
    to: tuple[str, ...] = Field((), validate_default=True)

    @property
    def url(self) -> str | None:
        return self.webhook_url or self.instance_url

    @field_validator("webhook_url", "instance_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("kind") != _URL_OF[info.field_name or ""]:
            return None
        url = str(value or "")
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise ValueError("must not carry credentials (name a setting instead)")
        if (parts.scheme == "https" and parts.hostname) or (parts.scheme == "http" and is_loopback_url(url)):
            return url
        raise ValueError("expected an https URL (plain http only for a loopback host)")

    @field_validator("secret", "username", "password", mode="before")
    @classmethod
    def _from_setting(cls, name: object, info: ValidationInfo) -> str | None:
        """The value of the app setting the file names (the file never holds a secret)."""
        if info.data.get("kind") != _SETTING_OF[info.field_name or ""]:
            return None
        if not isinstance(name, str) or not name:
            raise ValueError("name the app setting that holds the value")
        env: Mapping[str, str] = (info.context or {}).get("env", {})
        value = env.get(name, "")
        if not value:
            raise ValueError(f"app setting {name} is not set")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, to: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("kind") != "email":
            return to
        if not to or not all("@" in a and "\n" not in a and "," not in a for a in to):
            raise ValueError("expected a list of e-mail addresses")
        return to

    def signing_key(self) -> bytes:
        return self.secret.get_secret_value().encode() if self.secret is not None else b""


class Partner(_Model):
    name: str
    sink: SinkConfig
    tenant_id: str | None = Field(None, alias="tenantId")
    domains: tuple[str, ...] = ()

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not is_tenant_id(value):
            raise ValueError("expected a GUID")
        return value.lower() if value else value

    @model_validator(mode="after")
    def _addressed(self) -> Partner:
        if not self.tenant_id and not self.domains:
            raise ValueError("needs a tenantId or domains")
        return self


class PartnerDirectory(_Model):
    """The validated file: `resolve` picks the partner for a home tenant (tenant id, then domain, then default)."""

    partners: tuple[Partner, ...] = ()
    default: SinkConfig
    _by_tenant: dict[str, Partner] = PrivateAttr(default_factory=dict)
    _by_domain: dict[str, Partner] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _names(cls, document: Any) -> Any:
        """A partner without a name is called by its place in the file (partners[2])."""
        if isinstance(document, dict) and isinstance(document.get("partners"), list):
            partners = [
                {"name": f"partners[{i}]", **p} if isinstance(p, dict) and not p.get("name") else p
                for i, p in enumerate(document["partners"])
            ]
            return {**document, "partners": partners}
        return document

    def model_post_init(self, context: Any, /) -> None:
        for partner in self.partners:
            if partner.tenant_id:
                self._by_tenant[partner.tenant_id] = partner
            for domain in partner.domains:
                self._by_domain[domain.lower()] = partner

    def resolve(self, tenant_id: str | None, domain: str | None) -> Partner:
        """The tenant id decides first, then the home tenant's default domain (from Graph, never the guest's
        own mail domain, which need not belong to the tenant); else the default sink."""
        if tenant_id and tenant_id.lower() in self._by_tenant:
            return self._by_tenant[tenant_id.lower()]
        if domain and domain.lower() in self._by_domain:
            return self._by_domain[domain.lower()]
        return Partner.model_construct(name="default", sink=self.default, tenant_id=None, domains=())


def _where(loc: tuple[int | str, ...]) -> str:
    """("partners", 2, "sink", "username") -> partners[2].sink.usernameSetting: the file's own names."""
    aliases = {
        name: field.alias
        for model in (SinkConfig, Partner)
        for name, field in model.model_fields.items()
        if field.alias
    }
    text = ""
    for part in loc:
        part = aliases.get(part, part) if isinstance(part, str) else part
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "document"


def load_partner_directory(path: Path, env: Mapping[str, str]) -> PartnerDirectory:
    """Read and validate the file, resolving the secrets it names from `env` (the app settings); raise one
    PartnerDirectoryError naming every problem."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PartnerDirectoryError(f"{SETTING} {path}: cannot read it as JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise PartnerDirectoryError(f"{SETTING} {path}: expected a JSON object")
    try:
        return PartnerDirectory.model_validate(document, context={"env": env})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            where = _where(error["loc"])
            if error["type"] == "missing":
                message = "a default sink is required" if where == "default" else "required"
            else:
                message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        lines = "\n".join(f"  - {p}" for p in problems)
        raise PartnerDirectoryError(f"{SETTING} {path} needs attention:\n{lines}", problems) from None
