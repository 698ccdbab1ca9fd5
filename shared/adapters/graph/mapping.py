"""From Graph to the domain: one mapper per domain type, whatever shape Graph's answer arrived in.

List pages and batch answers are read as raw JSON (the SDK's models cost ~10 ms a user: 100,000 guests would
spend minutes of CPU in them; bench/README.md), single calls through the SDK come back as its models. A mapper
takes either: it reads each property by Graph's name (`createdDateTime`), from the JSON object or from the
model's attribute (`created_date_time`, then its additional_data), so there is one field list per type.

Also here: what guestwarden asks of users (fields, filters), the other direction of the same mapping.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.domain.directory import (
    AppliedPolicy,
    CreatedRange,
    DirectoryContact,
    DirectoryUser,
    GraphSubscription,
    ObjectIdentity,
    ServicePlan,
    SignIn,
    SignInActivity,
    SubscribedSku,
    TenantInformation,
)
from shared.domain.posture import AuthorizationSettings, CaPolicy, RoleHolder

__all__ = [
    "GUESTS_FILTER",
    "ID_AND_DATE_FIELDS",
    "USER_FIELDS",
    "authorization_from_json",
    "ca_policy_from_json",
    "contact_from_graph",
    "created_filter",
    "is_group",
    "odata_datetime",
    "role_holder_from_json",
    "sign_in_from_json",
    "sku_from_graph",
    "subscription_from_graph",
    "subscription_from_sdk",
    "tenant_from_graph",
    "timestamp",
    "user_from_graph",
    "user_from_json",
    "user_from_sdk",
]

GUESTS_FILTER = "userType eq 'Guest'"
"""Served without advanced query parameters (user.md: userType supports eq)."""

USER_FIELDS: tuple[str, ...] = (
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "otherMails",
    "userType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "creationType",
    "createdDateTime",
    "accountEnabled",
    "usageLocation",
    "assignedLicenses",
    "licenseAssignmentStates",
)
"""What guestwarden reads of a user. signInActivity is added only where needed: it needs Entra ID P1 and
AuditLog.Read.All, and it caps the page size."""
ID_AND_DATE_FIELDS: tuple[str, ...] = ("id", "userType", "createdDateTime")
"""What a chain that only looks for guests without a createdDateTime reads (Graph's largest pages)."""


# --------------------------------------------------------------------------------------------------------
# reading a property, whatever the shape
# --------------------------------------------------------------------------------------------------------


@functools.cache
def _attribute(name: str) -> str:
    """Graph's camelCase property name as the SDK model's attribute (createdDateTime -> created_date_time)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _is_object(value: Any) -> bool:
    """A JSON object or an SDK model (every kiota model carries additional_data)."""
    return isinstance(value, dict) or hasattr(value, "additional_data")


def _reader(source: Any) -> Callable[[str], Any]:
    """A property getter by Graph's name for a JSON object or an SDK model."""
    if isinstance(source, dict):
        return source.get
    extra = getattr(source, "additional_data", None) or {}

    def get(name: str) -> Any:
        value = getattr(source, _attribute(name), None)
        return extra.get(name) if value is None else value

    return get


def timestamp(value: Any) -> datetime | None:
    """A Graph timestamp, aware: an SDK datetime, or raw JSON ("...Z", with up to 7 fractional digits, which
    fromisoformat refuses)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    head, dot, rest = value.partition(".")
    if dot:  # fromisoformat takes at most 6 fractional digits; keep the zone ("Z", "+00:00") after them
        zone = rest.lstrip("0123456789")
        value = f"{head}.{rest[: len(rest) - len(zone)][:6].ljust(6, '0')}{zone}"
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------------------
# the mappers
# --------------------------------------------------------------------------------------------------------


def user_from_graph(user: Any) -> DirectoryUser:
    """A Graph user (raw JSON object or SDK model) as the domain's DirectoryUser."""
    get = _reader(user)
    activity = get("signInActivity")
    last = _reader(activity) if _is_object(activity) else None
    return DirectoryUser(
        id=str(get("id")),
        display_name=get("displayName"),
        user_principal_name=get("userPrincipalName"),
        mail=get("mail"),
        other_mails=tuple(get("otherMails") or ()),
        user_type=get("userType"),
        external_user_state=get("externalUserState"),
        external_user_state_changed=timestamp(get("externalUserStateChangeDateTime")),
        creation_type=get("creationType"),
        created=timestamp(get("createdDateTime")),
        account_enabled=get("accountEnabled"),
        usage_location=get("usageLocation"),
        assigned_sku_ids=frozenset(
            str(sku).lower()  # as str(UUID) gives them from the SDK
            for lic in (get("assignedLicenses") or ())
            if _is_object(lic) and (sku := _reader(lic)("skuId"))
        ),
        **_license_states(get("licenseAssignmentStates")),
        identities=tuple(
            ObjectIdentity(
                sign_in_type=(read := _reader(item))("signInType"),
                issuer=read("issuer"),
                issuer_assigned_id=read("issuerAssignedId"),
            )
            for item in (get("identities") or ())
            if _is_object(item)
        ),
        sign_in_activity=None
        if last is None
        else SignInActivity(
            last_sign_in=timestamp(last("lastSignInDateTime")),
            last_non_interactive_sign_in=timestamp(last("lastNonInteractiveSignInDateTime")),
            last_successful_sign_in=timestamp(last("lastSuccessfulSignInDateTime")),
        ),
    )


def _license_states(states: Any) -> dict[str, Any]:
    """Direct SKUs and licensing groups from licenseAssignmentStates (licenseassignmentstate.md: assignedByGroup
    is null for a direct assignment; an assignment in state Error holds no seat)."""
    if states is None:
        return {}
    direct: set[str] = set()
    groups: set[str] = set()
    for state in states:
        if not _is_object(state):
            continue
        read = _reader(state)
        group, sku = read("assignedByGroup"), read("skuId")
        if group:
            groups.add(str(group))
        elif sku and str(read("state") or "Active") != "Error":
            direct.add(str(sku).lower())
    return {"direct_sku_ids": frozenset(direct), "licensing_group_ids": frozenset(groups)}


user_from_json = user_from_graph
"""The same mapper, by the name list pages use."""
user_from_sdk = user_from_graph
"""The same mapper, by the name SDK answers use."""


def contact_from_graph(item: Any) -> DirectoryContact:
    """A sponsor or group member (raw JSON directoryObject or SDK model) as a DirectoryContact."""
    get = _reader(item)
    return DirectoryContact(
        id=str(get("id")),
        display_name=get("displayName"),
        mail=get("mail"),
        user_principal_name=get("userPrincipalName"),
    )


def is_group(item: dict[str, Any]) -> bool:
    return str(item.get("@odata.type", "")).lower().endswith(".group")


def sign_in_from_json(item: dict[str, Any]) -> SignIn:
    """A raw JSON signIn as the domain's SignIn: pages of sign-ins skip the SDK's models, whose parsing costs
    milliseconds an entry (measured: 20,000 sign-ins, a busy hour, took 90 s of CPU; bench/poller.py)."""
    status = item.get("status") or {}
    policies = item.get("appliedConditionalAccessPolicies") or ()
    return SignIn(
        id=str(item.get("id")),
        created=timestamp(item.get("createdDateTime")) or datetime.min.replace(tzinfo=UTC),
        user_id=item.get("userId"),
        user_principal_name=item.get("userPrincipalName"),
        app_display_name=item.get("appDisplayName"),
        error_code=int(status.get("errorCode") or 0),
        failure_reason=status.get("failureReason"),
        additional_details=status.get("additionalDetails"),
        home_tenant_id=item.get("homeTenantId"),
        resource_tenant_id=item.get("resourceTenantId"),
        risk_state=item.get("riskState"),
        risk_level_during_sign_in=item.get("riskLevelDuringSignIn"),
        risk_event_types=tuple(item.get("riskEventTypes_v2") or ()),
        conditional_access_status=item.get("conditionalAccessStatus"),
        applied_policies=tuple(
            AppliedPolicy(p.get("displayName"), p.get("result")) for p in policies if isinstance(p, dict)
        ),
        correlation_id=item.get("correlationId"),
    )


def subscription_from_graph(sub: Any) -> GraphSubscription:
    get = _reader(sub)
    return GraphSubscription(
        id=str(get("id")),
        resource=get("resource") or "",
        change_type=get("changeType") or "",
        notification_url=get("notificationUrl"),
        lifecycle_notification_url=get("lifecycleNotificationUrl"),
        expiration=timestamp(get("expirationDateTime")) or datetime.min.replace(tzinfo=UTC),
    )


subscription_from_sdk = subscription_from_graph


def sku_from_graph(sku: Any) -> SubscribedSku:
    get = _reader(sku)
    prepaid = get("prepaidUnits")
    return SubscribedSku(
        sku_id=str(get("skuId")),
        sku_part_number=get("skuPartNumber") or "",
        enabled_units=int(_reader(prepaid)("enabled") or 0) if _is_object(prepaid) else 0,
        consumed_units=int(get("consumedUnits") or 0),
        capability_status=get("capabilityStatus") or "",
        applies_to=get("appliesTo"),
        service_plans=tuple(_plan(p) for p in (get("servicePlans") or ()) if _is_object(p)),
    )


def _plan(plan: Any) -> ServicePlan:
    get = _reader(plan)
    status = get("provisioningStatus")
    return ServicePlan(str(get("servicePlanId") or ""), get("servicePlanName") or "", str(status) if status else None)


def tenant_from_graph(info: Any, tenant_id: str) -> TenantInformation:
    get = _reader(info)
    return TenantInformation(
        tenant_id=str(get("tenantId") or tenant_id),
        display_name=get("displayName"),
        default_domain_name=get("defaultDomainName"),
        federation_brand_name=get("federationBrandName"),
    )


# --------------------------------------------------------------------------------------------------------
# the other way: what we ask Graph for
# --------------------------------------------------------------------------------------------------------


def odata_datetime(moment: datetime) -> str:
    """A moment as `$filter` wants it: UTC, whole seconds, "Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def created_filter(created: CreatedRange) -> str:
    """A createdDateTime range as `$filter` clauses. user.md documents ge and le (not gt, lt, `eq null`) for
    createdDateTime: the range's exclusive `high` is asked with `le`, the caller drops what it does not own."""
    clauses = []
    if created.low is not None:
        clauses.append(f"createdDateTime ge {odata_datetime(created.low)}")
    if created.high is not None:
        clauses.append(f"createdDateTime le {odata_datetime(created.high)}")
    return " and ".join(clauses)


# --------------------------------------------------------------------------------------------------------
# posture: the tenant's settings, Conditional Access policies, role holders (raw JSON)
# --------------------------------------------------------------------------------------------------------
def authorization_from_json(body: dict[str, Any]) -> AuthorizationSettings:
    """authorizationpolicy.md: a singleton in v1.0 (an older shape wrapped it in `value`: both are read)."""
    values = body.get("value")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        body = values[0]
    invites, role = body.get("allowInvitesFrom"), body.get("guestUserRoleId")
    return AuthorizationSettings(str(invites) if invites else None, str(role) if role else None)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> frozenset[str]:
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


def _guest_types(value: Any) -> frozenset[str]:
    """conditionalAccessGuestsOrExternalUsers.guestOrExternalUserTypes: a comma-separated flags string."""
    types = value.get("guestOrExternalUserTypes") if isinstance(value, dict) else None
    return frozenset(t.strip() for t in str(types or "").split(",") if t.strip() and t.strip() != "none")


def ca_policy_from_json(item: dict[str, Any]) -> CaPolicy:
    conditions = _object(item.get("conditions"))
    users, apps = _object(conditions.get("users")), _object(conditions.get("applications"))
    grant = _object(item.get("grantControls"))
    strength = grant.get("authenticationStrength")
    return CaPolicy(
        id=str(item.get("id", "")),
        name=str(item.get("displayName") or item.get("id") or ""),
        state=str(item.get("state") or ""),
        include_users=_strings(users.get("includeUsers")),
        exclude_users=_strings(users.get("excludeUsers")),
        include_groups=_strings(users.get("includeGroups")),
        exclude_groups=_strings(users.get("excludeGroups")),
        include_roles=_strings(users.get("includeRoles")),
        include_guest_types=_guest_types(users.get("includeGuestsOrExternalUsers")),
        exclude_guest_types=_guest_types(users.get("excludeGuestsOrExternalUsers")),
        include_apps=_strings(apps.get("includeApplications")),
        exclude_apps=_strings(apps.get("excludeApplications")),
        controls=frozenset(c.lower() for c in _strings(grant.get("builtInControls"))),
        authentication_strength=(
            str(strength.get("displayName") or strength.get("id")) if isinstance(strength, dict) else None
        ),
        strength_read="authenticationStrength" in grant or not grant,
        user_risk_levels=tuple(sorted(_strings(conditions.get("userRiskLevels")))),
        sign_in_risk_levels=tuple(sorted(_strings(conditions.get("signInRiskLevels")))),
    )


def role_holder_from_json(item: dict[str, Any]) -> RoleHolder:
    """A unifiedRoleAssignment with `$expand=principal` (rbacapplication-list-roleassignments.md)."""
    principal = _object(item.get("principal"))
    kind = str(principal.get("@odata.type") or "").rsplit(".", 1)[-1] or "user"
    return RoleHolder(
        id=str(principal.get("id") or item.get("principalId") or ""),
        display_name=principal.get("displayName"),
        kind=kind,
        user_principal_name=principal.get("userPrincipalName"),
        user_type=principal.get("userType"),
    )
