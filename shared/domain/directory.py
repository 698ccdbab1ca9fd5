"""The directory as guestwarden's rules see it: users, licences, sign-ins. Pure data, no I/O.

These types are what the Graph gateway returns, so services and rules never touch msgraph-sdk models.
Field names follow Graph's meaning, in Python spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

UserType = Literal["Member", "Guest"]
ExternalUserState = Literal["PendingAcceptance", "Accepted"]


SELF_SERVICE_SIGN_UP = "SelfServiceSignUp"
"""user.md, creationType: a guest who signed up through a user flow (B2B self-service sign-up)."""


@dataclass(frozen=True, slots=True)
class SignInActivity:
    """Graph's signInActivity: absent for users who never signed in (or last did before April 2020)."""

    last_sign_in: datetime | None = None
    """Interactive sign-ins, failures included; can lag up to 24 h."""
    last_non_interactive_sign_in: datetime | None = None
    last_successful_sign_in: datetime | None = None
    """Only recorded since 2023-12-01, not backfilled."""

    @property
    def latest(self) -> datetime | None:
        """The latest of the three: the only fair reading of "last active" (interactive alone misses apps)."""
        stamps = [s for s in (self.last_sign_in, self.last_non_interactive_sign_in, self.last_successful_sign_in) if s]
        return max(stamps) if stamps else None


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """One entry of a user's `identities` (objectidentity.md): who vouches for the person at sign-in. For a B2B
    guest, after redemption, a `federated` entry names its identity provider (`MicrosoftAccount`, `mail`,
    `google.com`, `ExternalAzureAD` ...: entra-docs external-id/user-properties.md); before, only the host
    tenant's `userPrincipalName` entry is there."""

    sign_in_type: str | None = None
    issuer: str | None = None
    issuer_assigned_id: str | None = None


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user object, with only what guestwarden selects."""

    id: str
    display_name: str | None = None
    user_principal_name: str | None = None
    mail: str | None = None
    other_mails: tuple[str, ...] = ()
    user_type: str | None = None
    external_user_state: str | None = None
    external_user_state_changed: datetime | None = None
    creation_type: str | None = None
    created: datetime | None = None
    account_enabled: bool | None = None
    usage_location: str | None = None
    assigned_sku_ids: frozenset[str] = field(default_factory=frozenset)
    sign_in_activity: SignInActivity | None = None
    direct_sku_ids: frozenset[str] | None = None
    """SKUs assigned to the user directly (licenseAssignmentStates with no assignedByGroup) that hold a seat
    (state not Error); None when licenseAssignmentStates was not read."""
    licensing_group_ids: frozenset[str] = field(default_factory=frozenset)
    """Groups whose group-based licensing gives the user a licence (licenseAssignmentStates.assignedByGroup)."""
    identities: tuple[ObjectIdentity, ...] = ()
    """Only when read with them (`$select=identities`, user.md: returned only on $select); empty otherwise."""

    @property
    def is_guest(self) -> bool:
        """Only userType decides: a member whose UPN carries #EXT# is NOT a guest."""
        return self.user_type == "Guest"

    @property
    def has_accepted(self) -> bool:
        return self.external_user_state == "Accepted"

    @property
    def has_joined(self) -> bool:
        """In the tenant and able to work: redeemed an invitation (Accepted), or signed up through a self-service
        user flow, which leaves externalUserState null (creationType SelfServiceSignUp; there is no invitation
        to redeem). An invited guest whose state is null (some created before the property existed) is not
        counted: nothing says it ever redeemed."""
        return self.has_accepted or (self.external_user_state is None and self.creation_type == SELF_SERVICE_SIGN_UP)

    @property
    def home_domain(self) -> str | None:
        """The guest's own mail domain, lower case (from mail, else the UPN's `name_domain#EXT#` form)."""
        if self.mail and "@" in self.mail:
            return self.mail.rsplit("@", 1)[1].lower()
        upn = self.user_principal_name or ""
        if "#EXT#" in upn:
            local = upn.split("#EXT#", 1)[0]
            if "_" in local:
                return local.rsplit("_", 1)[1].lower()
        return None


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """One of a SKU's servicePlans (servicePlanInfo: id, name, provisioningStatus such as Success)."""

    plan_id: str
    name: str
    provisioning_status: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribedSku:
    sku_id: str
    sku_part_number: str
    enabled_units: int
    consumed_units: int
    capability_status: str
    applies_to: str | None = None
    service_plans: tuple[ServicePlan, ...] = ()

    @property
    def free_units(self) -> int:
        """Seats left: prepaidUnits.enabled - consumedUnits (never negative)."""
        return max(self.enabled_units - self.consumed_units, 0)


@dataclass(frozen=True, slots=True)
class GuestSpan:
    """How a tenant's dated guests spread over time: what the partitioned scan cuts into ranges (the count is
    Graph's eventually consistent `$count`)."""

    dated: int
    """Guests with a createdDateTime (some created before June 2018 have none)."""
    earliest: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedRange:
    """Guests created in [low, high): one range of the partitioned stale scan (half-open on our side, so every
    dated guest belongs to exactly one range; guests without a createdDateTime belong to none)."""

    low: datetime | None = None
    """Inclusive; None: from the beginning."""
    high: datetime | None = None
    """Exclusive; None: open-ended."""

    def owns(self, user: DirectoryUser) -> bool:
        created = user.created
        if created is None:
            return False  # read by id (shared/services/stale/scan.py: undated_ids, read_by_id)
        return (self.low is None or created >= self.low) and (self.high is None or created < self.high)


@dataclass(frozen=True, slots=True)
class DirectoryContact:
    """A sponsor or group member as a short reference."""

    id: str
    display_name: str | None = None
    mail: str | None = None
    user_principal_name: str | None = None
    via_group: str | None = None
    """A sponsor because it is a member of this sponsor group (a sponsor may be a group: user-list-sponsors.md)."""


@dataclass(frozen=True, slots=True)
class AppliedPolicy:
    display_name: str | None
    result: str | None


@dataclass(frozen=True, slots=True)
class SignIn:
    """One entry of /auditLogs/signIns, v1.0 fields only."""

    id: str
    created: datetime
    user_id: str | None
    user_principal_name: str | None
    app_display_name: str | None
    error_code: int
    failure_reason: str | None
    additional_details: str | None
    home_tenant_id: str | None
    resource_tenant_id: str | None
    risk_state: str | None
    risk_level_during_sign_in: str | None
    risk_event_types: tuple[str, ...] = ()
    conditional_access_status: str | None = None
    applied_policies: tuple[AppliedPolicy, ...] = ()
    correlation_id: str | None = None
    """The sign-in's correlationId: what a home admin searches their own sign-in logs with."""


@dataclass(frozen=True, slots=True)
class TenantInformation:
    """findTenantInformationByTenantId: a tenant's public name and default domain (never a contact)."""

    tenant_id: str
    display_name: str | None = None
    default_domain_name: str | None = None
    federation_brand_name: str | None = None


@dataclass(frozen=True, slots=True)
class DeltaPage:
    """One page of users/delta: changed users, ids removed, and where to go next."""

    changed: tuple[DirectoryUser, ...]
    removed_ids: tuple[str, ...]
    next_link: str | None
    delta_link: str | None


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    sender: str
    to: tuple[str, ...]
    subject: str
    body: str
    body_type: Literal["HTML", "Text"] = "HTML"


@dataclass(frozen=True, slots=True)
class GraphSubscription:
    """A change-notification subscription as Graph reports it."""

    id: str
    resource: str
    change_type: str
    notification_url: str | None
    lifecycle_notification_url: str | None
    expiration: datetime
