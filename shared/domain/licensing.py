"""Who gets a licence when, and with which usage location. Pure rules, no I/O.

A Graph notification only says WHICH user changed, never what: the processor re-reads the user and asks
`decide_licensing`. Every "no" carries a reason an admin can read in the logs and the audit.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from shared.domain.directory import DirectoryUser, SubscribedSku


class SkipReason(enum.StrEnum):
    """Why a user change needs no licensing action."""

    USER_NOT_FOUND = "user-not-found"
    NOT_A_GUEST = "not-a-guest"
    NOT_ACCEPTED = "invitation-not-accepted"
    ALREADY_LICENSED = "already-licensed"
    EXCLUDED_DOMAIN = "excluded-domain"
    DISABLED = "account-disabled"


@dataclass(frozen=True, slots=True)
class LicensingPolicy:
    """The licensing part of the settings, in domain terms."""

    mode: Literal["sku", "group"]
    sku_part_number: str | None = None
    disabled_plans: tuple[str, ...] = ()
    group_id: str | None = None
    default_usage_location: str | None = None
    usage_location_by_domain: Mapping[str, str] = field(default_factory=dict)
    excluded_domains: frozenset[str] = frozenset()

    @property
    def target(self) -> str:
        """What a licence means under this policy, for the idempotency ledger's scope."""
        return f"sku:{self.sku_part_number}" if self.mode == "sku" else f"group:{self.group_id}"


@dataclass(frozen=True, slots=True)
class Skip:
    reason: SkipReason
    final: bool
    """True when nothing about this user will change the answer for this target (record it as done);
    False when a later change might (e.g. the invitation is not accepted yet)."""


@dataclass(frozen=True, slots=True)
class AssignSku:
    sku_id: str
    disabled_plans: tuple[str, ...]
    set_usage_location: str | None
    """The country to set first, or None when the user has one (never overwritten)."""


@dataclass(frozen=True, slots=True)
class AddToGroup:
    group_id: str


LicensingDecision = Skip | AssignSku | AddToGroup


class NoSuchSku(LookupError):
    """The configured skuPartNumber is not subscribed in the tenant: a configuration error, not a retry."""


def usage_location_for(user: DirectoryUser, policy: LicensingPolicy) -> str | None:
    """The country a guest should get: per home domain, else the default. None if the user has one."""
    if user.usage_location:
        return None
    domain = user.home_domain
    if domain and domain in policy.usage_location_by_domain:
        return policy.usage_location_by_domain[domain]
    return policy.default_usage_location


def find_sku(skus: list[SubscribedSku], part_number: str) -> SubscribedSku:
    for sku in skus:
        if sku.sku_part_number.lower() == part_number.lower():
            return sku
    known = ", ".join(sorted(s.sku_part_number for s in skus)) or "none"
    raise NoSuchSku(f"LICENSE_SKU {part_number!r} is not subscribed in this tenant (subscribed: {known})")


def decide_licensing(
    user: DirectoryUser | None, policy: LicensingPolicy, sku: SubscribedSku | None
) -> LicensingDecision:
    """What to do for one changed user. `sku` is the configured SKU in sku mode (None in group mode)."""
    if user is None:
        return Skip(SkipReason.USER_NOT_FOUND, final=False)
    if not user.is_guest:
        return Skip(SkipReason.NOT_A_GUEST, final=False)
    if not user.has_joined:  # redeemed its invitation, or signed up itself (self-service: state null)
        return Skip(SkipReason.NOT_ACCEPTED, final=False)
    domain = user.home_domain
    if domain and domain in policy.excluded_domains:
        return Skip(SkipReason.EXCLUDED_DOMAIN, final=False)
    if user.account_enabled is False:
        return Skip(SkipReason.DISABLED, final=False)
    if policy.mode == "group":
        assert policy.group_id, "group mode needs LICENSE_GROUP_ID (settings enforce it)"
        return AddToGroup(policy.group_id)
    assert sku is not None, "sku mode needs the subscribed SKU"
    if sku.sku_id in user.assigned_sku_ids:
        return Skip(SkipReason.ALREADY_LICENSED, final=True)
    return AssignSku(sku.sku_id, policy.disabled_plans, usage_location_for(user, policy))
