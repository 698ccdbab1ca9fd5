"""Contract table: the throttling quotas Microsoft Graph applies to what guestwarden calls.

Data, not code paths (local/graph_sim/throttle.py applies it; tests/integration/test_graph_sim_throttling.py checks
each row both ways). Sources are pages of microsoftgraph/microsoft-graph-docs-contrib:
concepts/throttling-limits.md ("Identity and access service limits", "Identity and access reports service limits",
"Outlook service limits") and includes/throttling-entra-logs-reports.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

THROTTLING_LIMITS = "concepts/throttling-limits.md"
REPORTS_LIMITS = "includes/throttling-entra-logs-reports.md"


@dataclass(frozen=True)
class Quota:
    name: str
    limit: float
    """Requests (or resource units, for the identity bucket) allowed per window, per app and tenant."""
    window_s: float
    source: str


# Identity and access: a token bucket of resource units (RU) per app and tenant, sized by the tenant.
IDENTITY_RU_PER_10S: MappingProxyType[str, int] = MappingProxyType({"small": 3_500, "medium": 5_000, "large": 8_000})
"""S: under 50 users, M: 50 to 500, L: over 500 (throttling-limits.md, identity and access)."""
IDENTITY_WRITES = Quota("identity writes", 3_000, 150.0, THROTTLING_LIMITS)
"""3,000 write requests per 2 min 30 s per app and tenant."""
REPORTS = Quota("reports", 5, 10.0, f"{THROTTLING_LIMITS}; {REPORTS_LIMITS}")
"""Entra reporting APIs (/auditLogs/signIns, ...): 5 requests per 10 s per app per tenant."""
SIGN_IN_ACTIVITY = Quota("signInActivity", 10, 60.0, THROTTLING_LIMITS)
"""Reading signInActivity: 10 requests a minute (the reports table). How strictly Graph counts listing users
with `$select=signInActivity` against it is not settled (the same page says only it "may" be throttled more
strictly): the limit is a switch (`sim.throttling.sign_in_activity_per_minute`, None turns it off), strict by
default, and the app paces itself to the same number (GRAPH_SIGN_IN_ACTIVITY_PER_MINUTE)."""
OUTLOOK_CONCURRENT_PER_MAILBOX: Final = 4
"""Outlook (sendMail): 4 concurrent requests per app and mailbox (also 10,000 per 10 minutes)."""

# Resource-unit cost of an identity request (throttling-limits.md, cost table): base cost by route, then
# modifiers: $select -1, $expand +1, $top under 20 -1; never below 1. Writes cost 1 RU and one write.
IDENTITY_GET_COSTS: MappingProxyType[str, int] = MappingProxyType(
    {
        "/users": 2,
        "/users/{id}": 2,
        "/groups/{id}/members": 3,
        "/groups/{id}/transitiveMembers": 5,
        "/subscribedSkus": 3,
        "/servicePrincipals/{id}/appRoleAssignments": 2,
    }
)
OTHER_IDENTITY_GET_COST: Final = 1
WRITE_COST: Final = 1
IDENTITY_PREFIXES: Final = (
    "/users",
    "/groups",
    "/directory",
    "/servicePrincipals",
    "/subscribedSkus",
    "/tenantRelationships",
    "/policies",
)
"""Routes served by the identity and access service (its resource list: includes/throttling-identity-and-access.md;
/policies/authorizationPolicy is a policyBase, "Policy base" in that list). Not in it: /auditLogs (reports),
sendMail (Outlook), /subscriptions (change notifications), /identity/conditionalAccess (CONDITIONAL_ACCESS below),
/roleManagement (unifiedRoleAssignment is in no list of throttling-limits.md: not throttled here) and $batch itself
(each inner request counts on its own)."""

# Identity Protection and Conditional Access (throttling-limits.md, "Identity protection and conditional access
# service limits"): 1 request per second per tenant for all apps, on the resources of
# includes/throttling-identityprotection-ca.md (conditionalAccessPolicy among them); their 429s carry no Retry-After.
CONDITIONAL_ACCESS = Quota(
    "identity protection and conditional access",
    1,
    1.0,
    f"{THROTTLING_LIMITS}; includes/throttling-identityprotection-ca.md",
)
CONDITIONAL_ACCESS_PREFIXES: Final = ("/identity/conditionalAccess",)
NO_RETRY_AFTER: Final = frozenset({CONDITIONAL_ACCESS.name})
"""Quotas whose 429 carries no Retry-After (the client must back off on its own)."""
