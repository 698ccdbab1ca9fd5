"""Which sign-ins are guests blocked because of risk, and how they group into incidents. Pure: no I/O.

The resource tenant cannot remediate a guest's user risk (seed 000_6ce2394c57daaf9c.txt, "Limitations"): only
the guest (self-service password reset at home) or the home tenant's admin can. So guestwarden looks for the
sign-ins where that block happened, and only those (../shared/GRAPH-FACTS.md, "Sign-in logs and risk"):

* 53011 "User blocked due to risk on home tenant": THE B2B case.
* 530032 carrying the same home-tenant-risk text (some error tables list it there); a 530032 without that
  text is a tenant security-policy block, not risk.
* 53003 (blocked by Conditional Access) and 53004 (proof-up blocked due to risk) only when the sign-in itself
  carries risk (riskLevelDuringSignIn low/medium/high, or riskState atRisk/confirmedCompromised): a
  compliant-device or location policy also answers 53003, and that is not the guest's to fix at home.
* Everything else is ignored with a reason an operator can count: success, wrong password (50126), locked
  account or malicious IP (50053), cross-tenant access policy (500212/500213), ...

A guest is a user whose sign-in came from another tenant (homeTenantId != resourceTenantId) AND whose user
object says userType Guest (v1.0 has no userType on a sign-in): a member, even an external-looking one, is
never treated as a guest.

Incidents: a guest's risk blocks belong to one incident until the guest has been quiet (no risk block) for
the configured quiet period. Logs arrive late and the poller re-reads an overlapping window, so grouping is
idempotent: a sign-in already inside an incident's span changes nothing, a late one that falls within the
quiet period of an incident joins it, and only a sign-in outside every known incident's reach opens a new one.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.domain.directory import DirectoryUser, SignIn

HOME_TENANT_RISK_CODE = 53011
HOME_TENANT_RISK_ALT_CODE = 530032
CA_BLOCK_CODE = 53003
PROOF_UP_BLOCKED_CODE = 53004
HOME_TENANT_RISK_TEXT = "risk on home tenant"
RISKY_GUEST_LINK = "aka.ms/riskyguestuser"
RISKY_LEVELS = frozenset({"low", "medium", "high"})
RISKY_STATES = frozenset({"atrisk", "confirmedcompromised"})


class Cause(enum.StrEnum):
    """Why a guest's sign-in counts as a risk block."""

    HOME_TENANT_RISK = "home-tenant-risk"
    """53011 (or 530032 with the same text): the guest's user risk at home."""
    RISK_CONDITIONAL_ACCESS = "risk-conditional-access"
    """53003 on a sign-in that carries risk: a risk-conditioned Conditional Access policy."""
    RISK_PROOF_UP = "risk-proof-up"
    """53004 on a sign-in that carries risk: MFA registration blocked because of risk."""


class Ignored(enum.StrEnum):
    """Why a sign-in is not a guest risk block (counted per poll)."""

    SUCCESS = "success"
    WRONG_PASSWORD = "wrong-password"  # noqa: S105 - a reason name, not a password
    LOCKED_OR_MALICIOUS_IP = "locked-or-malicious-ip"
    CROSS_TENANT_POLICY = "cross-tenant-access-policy"
    SECURITY_POLICY = "security-policy-without-risk"
    CONDITIONAL_ACCESS_WITHOUT_RISK = "conditional-access-without-risk"
    OTHER_FAILURE = "other-failure"
    SAME_TENANT = "same-tenant-sign-in"
    """homeTenantId == resourceTenantId (or missing): a member of this tenant."""
    MEMBER = "member"
    """The user object says Member: never mailed, never ticketed."""
    USER_NOT_FOUND = "user-not-found"
    """Deleted since, or never readable: nobody to tell."""


NON_RISK_CODES: Mapping[int, Ignored] = {
    0: Ignored.SUCCESS,
    50126: Ignored.WRONG_PASSWORD,
    50053: Ignored.LOCKED_OR_MALICIOUS_IP,
    500212: Ignored.CROSS_TENANT_POLICY,
    500213: Ignored.CROSS_TENANT_POLICY,
}


def carries_risk(sign_in: SignIn) -> bool:
    """The sign-in was evaluated as risky (a real level, or a risky user state), not 'none' or 'hidden'."""
    level = (sign_in.risk_level_during_sign_in or "").lower()
    state = (sign_in.risk_state or "").lower()
    return level in RISKY_LEVELS or state in RISKY_STATES


def mentions_home_tenant_risk(sign_in: SignIn) -> bool:
    text = f"{sign_in.failure_reason or ''} {sign_in.additional_details or ''}".lower()
    return HOME_TENANT_RISK_TEXT in text or RISKY_GUEST_LINK in text


def classify_block(sign_in: SignIn) -> Cause | Ignored:
    """What the sign-in's status says, before asking who the user is."""
    code = sign_in.error_code
    if code in NON_RISK_CODES:
        return NON_RISK_CODES[code]
    if code == HOME_TENANT_RISK_CODE:
        return Cause.HOME_TENANT_RISK
    if code == HOME_TENANT_RISK_ALT_CODE:
        return Cause.HOME_TENANT_RISK if mentions_home_tenant_risk(sign_in) else Ignored.SECURITY_POLICY
    if code == CA_BLOCK_CODE:
        return Cause.RISK_CONDITIONAL_ACCESS if carries_risk(sign_in) else Ignored.CONDITIONAL_ACCESS_WITHOUT_RISK
    if code == PROOF_UP_BLOCKED_CODE:
        return Cause.RISK_PROOF_UP if carries_risk(sign_in) else Ignored.CONDITIONAL_ACCESS_WITHOUT_RISK
    return Ignored.OTHER_FAILURE


def is_cross_tenant(sign_in: SignIn) -> bool:
    home, resource = sign_in.home_tenant_id, sign_in.resource_tenant_id
    return bool(home and resource and home.lower() != resource.lower())


def judge_user(user: DirectoryUser | None) -> Ignored | None:
    """None when the user object is a guest; otherwise why the block is not ours to act on."""
    if user is None:
        return Ignored.USER_NOT_FOUND
    return None if user.is_guest else Ignored.MEMBER


@dataclass(frozen=True, slots=True)
class RiskBlock:
    """A guest's sign-in blocked because of risk: what the notice and the ticket are built from."""

    sign_in: SignIn
    cause: Cause

    @property
    def user_id(self) -> str:
        return self.sign_in.user_id or ""


@dataclass(frozen=True, slots=True)
class Incident:
    """A run of one guest's risk blocks with no gap longer than the quiet period."""

    id: str
    user_id: str
    started: datetime
    last_seen: datetime
    blocks: int
    first: RiskBlock | None = None
    """The block that opened the incident (None when the incident was loaded from state)."""

    def reaches(self, moment: datetime, quiet: timedelta) -> bool:
        return self.started - quiet <= moment <= self.last_seen + quiet

    def absorb(self, moment: datetime) -> Incident:
        return replace(
            self, started=min(self.started, moment), last_seen=max(self.last_seen, moment), blocks=self.blocks + 1
        )


def incident_id(user_id: str, first_sign_in_id: str) -> str:
    """Deterministic: the same first block gives the same id in every overlapping poll (the queue's message
    id and the ledger's scope are built from it, so re-detection collapses instead of re-notifying)."""
    digest = hashlib.sha256(f"{user_id}|{first_sign_in_id}".encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True, slots=True)
class Grouping:
    new: tuple[Incident, ...]
    """Incidents opened by this batch: one message each."""
    incidents: Mapping[str, tuple[Incident, ...]]
    """Per guest: every known incident after this batch (to be saved)."""
    already_seen: int
    """Blocks that fell inside a known incident (re-read by the overlap, or a late repeat)."""


def group_incidents(
    blocks: Iterable[RiskBlock],
    known: Mapping[str, Sequence[Incident]],
    quiet: timedelta,
    seen_sign_in_ids: frozenset[str] = frozenset(),
) -> Grouping:
    """Fold blocks (any order) into the guests' known incidents; open an incident only outside their reach.

    `seen_sign_in_ids` are sign-ins already counted (the overlap re-reads them): they never count twice."""
    by_user: dict[str, list[Incident]] = {user: list(items) for user, items in known.items()}
    new_ids: set[str] = set()
    already_seen = 0
    for block in sorted(blocks, key=lambda b: (b.sign_in.created, b.sign_in.id)):
        if block.sign_in.id in seen_sign_in_ids:
            already_seen += 1
            continue
        incidents = by_user.setdefault(block.user_id, [])
        moment = block.sign_in.created
        index = next((i for i, inc in enumerate(incidents) if inc.reaches(moment, quiet)), None)
        if index is None:
            opened = Incident(incident_id(block.user_id, block.sign_in.id), block.user_id, moment, moment, 1, block)
            incidents.append(opened)
            new_ids.add(opened.id)
        else:
            if incidents[index].id not in new_ids:
                already_seen += 1
            incidents[index] = incidents[index].absorb(moment)
    new = tuple(inc for items in by_user.values() for inc in items if inc.id in new_ids)
    return Grouping(new, {user: tuple(items) for user, items in by_user.items()}, already_seen)


def prune_incidents(incidents: Sequence[Incident], keep_after: datetime) -> tuple[Incident, ...]:
    """Incidents a future poll can still reach; older ones are only in the audit log."""
    return tuple(inc for inc in incidents if inc.last_seen >= keep_after)


# --- the guest notice and the home-tenant ticket --------------------------------------------------------------

_ADDRESS = re.compile(r"^[^@\s,;<>\"'()\[\]\\]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,63}$")
_UNSAFE_SUBJECT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]+")
"""Controls (C0, DEL, C1), line/paragraph separators and bidi overrides (a name could reorder a subject)."""
MAX_SUBJECT = 200

REMEDIATION_STEPS: tuple[str, ...] = (
    "Ask the user to reset their password at https://passwordreset.microsoftonline.com/ (self-service password "
    "reset): a secure reset remediates their user risk.",
    "If self-service password reset is not enabled: in the Microsoft Entra admin center, Identity Protection > "
    "Risky users, select the user and choose 'Reset password' (a temporary password, changed at next sign-in).",
    "If a reset is not an option: 'Dismiss user risk' on the same report, and still change the password by "
    "whatever means you have, to bring the account back to a safe state.",
)
"""From seed 000_6ce2394c57daaf9c.txt, "How to remediate a user's risk as an administrator"."""


def notice_recipients(user: DirectoryUser) -> tuple[str, ...]:
    """The guest's own addresses only: `mail`, else otherMails. Never a member, never anything else."""
    if not user.is_guest:
        return ()
    if user.mail and _ADDRESS.fullmatch(user.mail):
        return (user.mail,)
    seen: dict[str, str] = {}
    for address in user.other_mails:
        if _ADDRESS.fullmatch(address):
            seen.setdefault(address.lower(), address)
    return tuple(seen.values())


def safe_subject(text: str) -> str:
    """One line, no control characters (no header injection through a rendered name), bounded."""
    line = " ".join(_UNSAFE_SUBJECT.sub(" ", text).split())
    return line[:MAX_SUBJECT]


def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.fullmatch(value))


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the home tenant's admin needs to find and fix the user, and nothing more (no IP, device,
    location or app: those are our logs, not theirs to act on)."""

    incident_id: str
    home_tenant_id: str
    home_organisation: str
    resource_organisation: str
    resource_tenant_id: str | None
    guest_mail: str | None
    first_blocked_at: str
    error_code: int
    failure_reason: str | None
    risk_level: str | None
    risk_state: str | None
    risk_event_types: tuple[str, ...]
    correlation_id: str | None
    sign_in_id: str
    contact: str | None
    remediation: tuple[str, ...] = REMEDIATION_STEPS

    @property
    def title(self) -> str:
        return safe_subject(
            f"Risky user {self.guest_mail or '(no mail)'} blocked as a guest at {self.resource_organisation}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "incidentId": self.incident_id,
            "title": self.title,
            "homeTenantId": self.home_tenant_id,
            "homeOrganisation": self.home_organisation,
            "resourceOrganisation": self.resource_organisation,
            "resourceTenantId": self.resource_tenant_id,
            "user": {"mail": self.guest_mail},
            "firstBlockedAt": self.first_blocked_at,
            "signIn": {
                "errorCode": self.error_code,
                "failureReason": self.failure_reason,
                "riskLevelDuringSignIn": self.risk_level,
                "riskState": self.risk_state,
                "riskEventTypes": list(self.risk_event_types),
                "correlationId": self.correlation_id,
                "requestId": self.sign_in_id,
            },
            "remediation": list(self.remediation),
            "contact": self.contact,
        }
