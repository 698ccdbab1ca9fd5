"""Conversions and identity drift: what a re-read user says about the guest we knew. Pure rules, no I/O.

A /users change notification (or the delta backstop) says only WHICH user changed. guestwarden remembers, per
guest, a small record (`GuestWatch`): the userType it last saw and the sign-in identities the guest had once it
had redeemed. `review` compares the user as Graph answers now with that record:

- **Conversion**: the user is a Member now and we knew it as a Guest (our record, or guest-only state of ours:
  a stale-stage record, a licence we gave as a guest). userType alone decides, as everywhere in guestwarden:
  Microsoft documents that `userType` is only the permission level, not where a user signs in
  (entra-docs identity/users/convert-external-users-internal.md), and an admin may set it (PATCH userType) or
  `convertExternalToInternalMemberUser` may (beta; the 2023 page says it "updates the userType from guest to
  member", today's page no longer says). A Member we never knew as a guest (an external member from
  cross-tenant sync, say) is not a conversion.
- **Identity drift**: a guest that had redeemed, whose sign-in identities are different now. After redemption
  Entra adds a `federated` entry naming the guest's identity provider (`ExternalAzureAD`, `MicrosoftAccount`,
  `mail`, `google.com`, `facebook.com`, a SAML/WS-Fed issuer URI: entra-docs external-id/user-properties.md,
  "Identities"; objectidentity.md). Another provider later means someone else may now sign in as this guest
  (the invite-abuse pattern: a redemption reset, or an invitation redeemed by the wrong person). It is flagged
  to the admins and never acted on: a reset of redemption by an admin is a legitimate cause too.

What is compared: every identity except the host tenant's own `userPrincipalName` entry (it follows the UPN,
which admins rename), as (signInType, issuer) pairs, case-insensitive; and, for a pair present on both sides,
the issuerAssignedId when both sides carry one (an email one-time passcode entry names the address: another
address at the same issuer is another person). What a Microsoft account or Google entry's issuerAssignedId
holds is not documented, so a value appearing where there was none is not drift.

While a guest is back in PendingAcceptance (its redemption was reset) nothing is compared and the baseline is
kept: the drift, if any, shows when it redeems again, and the flag says a reset was seen.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.domain.directory import DirectoryUser, ObjectIdentity

__all__ = [
    "Converted",
    "Drift",
    "DriftKind",
    "Drifted",
    "GuestWatch",
    "Remember",
    "Unchanged",
    "Untracked",
    "identity_drift",
    "review",
    "sign_in_identities",
]

HOST_SIGN_IN_TYPE = "userPrincipalName"


def sign_in_identities(user: DirectoryUser) -> tuple[ObjectIdentity, ...]:
    """The identities that say who signs in: all but the host tenant's userPrincipalName entry, in a stable
    order."""
    kept = [i for i in user.identities if (i.sign_in_type or "").lower() != HOST_SIGN_IN_TYPE.lower()]
    return tuple(sorted(kept, key=lambda i: (_key(i), (i.issuer_assigned_id or "").lower())))


def _key(identity: ObjectIdentity) -> tuple[str, str]:
    return ((identity.sign_in_type or "").lower(), (identity.issuer or "").lower())


def identity_json(identity: ObjectIdentity) -> dict[str, Any]:
    return {
        "signInType": identity.sign_in_type,
        "issuer": identity.issuer,
        "issuerAssignedId": identity.issuer_assigned_id,
    }


def identity_from_json(value: Any) -> ObjectIdentity:
    value = value if isinstance(value, dict) else {}

    def text(name: str) -> str | None:
        found = value.get(name)
        return str(found) if isinstance(found, str) else None

    return ObjectIdentity(text("signInType"), text("issuer"), text("issuerAssignedId"))


def describe(identities: tuple[ObjectIdentity, ...]) -> str:
    """`federated/ExternalAzureAD, federated/mail (a@b.c)`, or `none`: for mails and logs."""
    if not identities:
        return "none"
    parts = []
    for i in identities:
        text = f"{i.sign_in_type or '?'}/{i.issuer or '?'}"
        parts.append(f"{text} ({i.issuer_assigned_id})" if i.issuer_assigned_id else text)
    return ", ".join(parts)


class DriftKind(enum.StrEnum):
    ISSUER_CHANGED = "issuer-changed"
    """A provider replaced another (e.g. ExternalAzureAD -> mail)."""
    IDENTITY_ADDED = "identity-added"
    """A provider was added next to the ones the guest had."""
    IDENTITY_REMOVED = "identity-removed"
    """A provider went and none replaced it (e.g. the guest now signs in with this tenant's credentials)."""
    ASSIGNED_ID_CHANGED = "issuer-assigned-id-changed"
    """The same provider, another account at it (e.g. another address for email one-time passcode)."""


@dataclass(frozen=True, slots=True)
class Drift:
    kind: DriftKind
    before: tuple[ObjectIdentity, ...]
    after: tuple[ObjectIdentity, ...]

    @property
    def fingerprint(self) -> str:
        """Names the new identities (with the baseline's date, the ledger scope of the flag)."""
        return hashlib.sha256(describe(self.after).lower().encode()).hexdigest()[:16]


def identity_drift(before: tuple[ObjectIdentity, ...], after: tuple[ObjectIdentity, ...]) -> Drift | None:
    """How the sign-in identities changed between the baseline and now; None when they did not."""
    old = {_key(i): (i.issuer_assigned_id or "").lower() for i in before}
    new = {_key(i): (i.issuer_assigned_id or "").lower() for i in after}
    if old.keys() != new.keys():
        if old.keys() < new.keys():
            kind = DriftKind.IDENTITY_ADDED
        elif new.keys() < old.keys():
            kind = DriftKind.IDENTITY_REMOVED
        else:
            kind = DriftKind.ISSUER_CHANGED
        return Drift(kind, before, after)
    if any(old[k] and new[k] and old[k] != new[k] for k in old):
        return Drift(DriftKind.ASSIGNED_ID_CHANGED, before, after)
    return None


@dataclass(frozen=True, slots=True)
class GuestWatch:
    """What we remember of a user we knew as a guest (a state record per user)."""

    user_type: str
    """The userType we last saw: "Guest", or "Member" once we recorded its conversion."""
    since: datetime
    """When we first saw it with that userType (a conversion's ledger scope)."""
    identities: tuple[ObjectIdentity, ...] | None = None
    """The sign-in identities seen at or after redemption (None: not redeemed when we looked)."""
    baseline_at: datetime | None = None
    """When `identities` was recorded (a drift's ledger scope, with the new identities)."""
    reset_seen: datetime | None = None
    """When we saw the guest back in PendingAcceptance after a baseline (a redemption reset)."""

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"userType": self.user_type, "since": self.since.isoformat()}
        if self.identities is not None:
            value["identities"] = [identity_json(i) for i in self.identities]
        if self.baseline_at is not None:
            value["baselineAt"] = self.baseline_at.isoformat()
        if self.reset_seen is not None:
            value["resetSeen"] = self.reset_seen.isoformat()
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> GuestWatch:
        identities = value.get("identities")
        return cls(
            user_type=str(value.get("userType") or "Guest"),
            since=datetime.fromisoformat(str(value["since"])),
            identities=tuple(identity_from_json(i) for i in identities) if isinstance(identities, list) else None,
            baseline_at=datetime.fromisoformat(str(value["baselineAt"])) if value.get("baselineAt") else None,
            reset_seen=datetime.fromisoformat(str(value["resetSeen"])) if value.get("resetSeen") else None,
        )


# --- what review decides -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Untracked:
    """Nothing to remember: not a guest and never known as one (or the user is gone)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A guest as we remember it."""


@dataclass(frozen=True, slots=True)
class Remember:
    """Record (or update) the guest's record; nothing to tell anyone (first sight, redemption, a reset)."""

    watch: GuestWatch
    reason: str


@dataclass(frozen=True, slots=True)
class Converted:
    """A guest became a Member: audit it, close the guest-only state, maybe take the guest licence back."""

    scope: str
    """The ledger scope: one conversion per stint as a guest."""
    previous: GuestWatch | None
    """Our record of the guest (None: known only by guest-only state recorded before this record existed)."""
    watch: GuestWatch
    """The record to keep afterwards (userType Member)."""


@dataclass(frozen=True, slots=True)
class Drifted:
    """A redeemed guest's sign-in identities changed: flag it to the admins, once; then remember the new ones."""

    drift: Drift
    scope: str
    previous: GuestWatch
    watch: GuestWatch


Review = Untracked | Unchanged | Remember | Converted | Drifted


def review(user: DirectoryUser | None, watch: GuestWatch | None, now: datetime, *, guest_state: bool) -> Review:
    """What the user as read now means against our record. `guest_state`: we hold guest-only state of this user
    (a stale-stage record, a licence given as a guest), which makes a Member without a record a conversion."""
    if user is None:
        return Untracked("user-not-found")  # deleted (restorable) or not readable: keep the record as it is
    if not user.is_guest:
        if watch is not None and watch.user_type == "Member":
            return Untracked("member")
        if watch is None and not guest_state:
            return Untracked("never-a-guest")
        scope = f"guest-since:{watch.since.isoformat()}" if watch is not None else "guest-state"
        return Converted(scope, watch, GuestWatch(str(user.user_type or "Member"), now))
    if watch is None or watch.user_type != "Guest":
        first = GuestWatch("Guest", now)
        if user.has_joined:
            first = replace(first, identities=sign_in_identities(user), baseline_at=now)
        return Remember(first, "first-seen" if watch is None else "guest-again")
    if not user.has_joined:
        if watch.identities is not None and watch.reset_seen is None:
            return Remember(replace(watch, reset_seen=now), "redemption-reset")
        return Unchanged()
    current = sign_in_identities(user)
    if watch.identities is None:
        return Remember(replace(watch, identities=current, baseline_at=now), "redeemed")
    drift = identity_drift(watch.identities, current)
    if drift is None:
        if watch.reset_seen is not None:  # redeemed again with the same identity: the reset is over
            return Remember(replace(watch, reset_seen=None), "redeemed-again")
        return Unchanged()
    baseline = (watch.baseline_at or watch.since).isoformat()
    after = replace(watch, identities=current, baseline_at=now, reset_seen=None)
    return Drifted(drift, f"{baseline}:{drift.fingerprint}", watch, after)
