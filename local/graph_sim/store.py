"""The tenant's state: users (live and soft-deleted), groups, SKUs with seat accounting, sign-in logs,
and a change version per user so users/delta can answer "what changed since"."""

from __future__ import annotations

import bisect
import copy
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from local.graph_sim.clock import SimClock, iso_z, parse_dt, rebase_tenant
from local.graph_sim.contract_queries import (
    DEFAULT_CA_AUTHENTICATION_STRENGTH,
    DEFAULT_CA_PAGE_SIZE,
    DEFAULT_INVITATION_RESEND_DATE,
    DEFAULT_PAGE_TOKEN_LIFETIME,
    DEFAULT_SIGN_IN_ACTIVITY_PAGING,
    DEFAULT_TRANSITIVE_MEMBERS_PAGING,
)

Json = dict[str, Any]
DELETED_RETENTION = timedelta(days=30)


def signin_sort_key(entry: Json) -> tuple[float, str]:
    """Newest first, then id: a total order that keyset paging can resume from."""
    return (-parse_dt(entry["createdDateTime"]).timestamp(), str(entry.get("id", "")))


class TenantStore:
    def __init__(self, document: Json, clock: SimClock) -> None:
        doc = copy.deepcopy(document)
        rebase_tenant(doc, clock.start)  # the fixture's own `now` becomes the simulator's start
        self.lock = threading.RLock()
        self.clock = clock
        self.tenant: Json = doc.get("tenant", {})
        self.partner_tenants: list[Json] = doc.get("partnerTenants", [])
        self.named: dict[str, str] = doc.get("named", {})
        self.users: dict[str, Json] = {user["id"]: user for user in doc.get("users", [])}
        for user in self.users.values():
            add_direct_license_states(user, str(user.get("createdDateTime") or ""))
        self.deleted: dict[str, Json] = {user["id"]: user for user in doc.get("deletedUsers", [])}
        self.groups: dict[str, Json] = {group["id"]: group for group in doc.get("groups", [])}
        for group in self.groups.values():
            group.setdefault("members", [])
        self.skus: dict[str, Json] = {sku["skuId"].lower(): sku for sku in doc.get("subscribedSkus", [])}
        self.signins: list[Json] = sorted(doc.get("signIns", []), key=signin_sort_key)
        # Service principals and Graph app role grants (local/graph_sim/identity.py, resources/service_principals.py)
        self.service_principals: dict[str, Json] = {sp["id"]: sp for sp in doc.get("servicePrincipals", [])}
        self.app_role_assignments: list[Json] = doc.get("appRoleAssignments", [])
        # Posture (resources/policies.py): the authorization policy (None: Microsoft's defaults), the Conditional
        # Access policies in the order listed, and the directory role assignments
        self.authorization_policy: Json | None = doc.get("authorizationPolicy")
        self.ca_policies: list[Json] = doc.get("conditionalAccessPolicies", [])
        self.role_assignments: list[Json] = doc.get("roleAssignments", [])
        self.ca_page_size = DEFAULT_CA_PAGE_SIZE  # contract_queries.CA_POLICY_OPTIONS: the server's page size
        self.ca_authentication_strength = DEFAULT_CA_AUTHENTICATION_STRENGTH  # CA_AUTHENTICATION_STRENGTH variants
        # Entra ID P1 (signInActivity needs it); a fixture says "entraIdP1": false for a tenant without it
        self.entra_id_p1 = bool(self.tenant.get("entraIdP1", True))
        self._signin_keys = [signin_sort_key(entry) for entry in self.signins]
        self._sorted_ids = sorted(self.users)
        self._upn = {str(u.get("userPrincipalName", "")).lower(): uid for uid, u in self.users.items()}
        self.version = 0
        self.changes: dict[str, int] = {}
        self.purged: set[str] = set()
        self.revoked_sessions: dict[str, str] = {}
        self.delta_epoch = 0  # bumped by expire_delta_links(): older deltaLinks are no longer served
        self.delta_expiry_variant = "syncStateNotFound"  # ... and answer this way (resources/delta.py)
        self.sign_in_activity_paging = DEFAULT_SIGN_IN_ACTIVITY_PAGING  # contract_queries.SIGN_IN_ACTIVITY_PAGING
        self.page_token_lifetime = DEFAULT_PAGE_TOKEN_LIFETIME  # contract_queries.PAGE_TOKEN_LIFETIMES
        self.invitation_resend_date = DEFAULT_INVITATION_RESEND_DATE  # contract_queries.INVITATION_RESEND_DATES
        self.transitive_members_paging = DEFAULT_TRANSITIVE_MEMBERS_PAGING  # contract_queries.TRANSITIVE_MEMBERS_PAGING
        # Called with (user id, change type) on every change, under self.lock (change notifications).
        self.listeners: list[Callable[[str, str], None]] = []
        self.recount_seats()

    # users -----------------------------------------------------------------------------------------
    def find_user(self, key: str) -> Json | None:
        user = self.users.get(key)
        if user is not None:
            return user
        uid = self._upn.get(key.lower())
        return self.users.get(uid) if uid else None

    def sorted_user_ids(self, after: str | None = None) -> list[str]:
        if after is None:
            return self._sorted_ids
        return self._sorted_ids[bisect.bisect_right(self._sorted_ids, after) :]

    def bump(self, user_id: str, change_type: str = "updated") -> None:
        """Record a change for delta and tell the listeners. Creation and soft deletion are `updated`;
        only a permanent deletion (purge) is `deleted`, as Graph reports them for users."""
        self.version += 1
        self.changes[user_id] = self.version
        for listener in self.listeners:
            listener(user_id, change_type)

    def update_user(self, user_id: str, props: Json) -> Json:
        user = self.users[user_id]
        if "userPrincipalName" in props:
            self._upn.pop(str(user.get("userPrincipalName", "")).lower(), None)
            self._upn[str(props["userPrincipalName"]).lower()] = user_id
        user.update(props)
        self.bump(user_id)
        return user

    def add_user(self, user: Json) -> None:
        add_direct_license_states(user, str(user.get("createdDateTime") or ""))
        self.users[user["id"]] = user
        bisect.insort(self._sorted_ids, user["id"])
        self._upn[str(user.get("userPrincipalName", "")).lower()] = user["id"]
        self.bump(user["id"])

    def _unlink(self, user_id: str) -> Json:
        user = self.users.pop(user_id)
        index = bisect.bisect_left(self._sorted_ids, user_id)
        if index < len(self._sorted_ids) and self._sorted_ids[index] == user_id:
            del self._sorted_ids[index]
        self._upn.pop(str(user.get("userPrincipalName", "")).lower(), None)
        return user

    def soft_delete(self, user_id: str) -> None:
        user = self._unlink(user_id)
        user["deletedDateTime"] = iso_z(self.clock.now())
        self.deleted[user_id] = user
        self._consume(user, -1)
        self.bump(user_id)

    def restore(self, user_id: str) -> Json:
        user = self.deleted.pop(user_id)
        user["deletedDateTime"] = None
        self.add_user(user)
        self._consume(user, +1)
        return user

    def purge_expired(self) -> None:
        """Soft-deleted users are gone for good after 30 days (on the simulator clock)."""
        cutoff = self.clock.now() - DELETED_RETENTION
        for user_id, user in list(self.deleted.items()):
            stamp = user.get("deletedDateTime")
            if stamp and parse_dt(stamp) <= cutoff:
                del self.deleted[user_id]
                self.purged.add(user_id)
                self.bump(user_id, "deleted")

    # groups ----------------------------------------------------------------------------------------
    def groups_of(self, user_id: str) -> list[Json]:
        return [group for group in self.groups.values() if user_id in group["members"]]

    def transitive_members(self, group_id: str) -> list[Json]:
        """Every object reached through the group's members and its nested groups' members, each once, in id
        order; a cycle of nested groups ends where it started (the group is not its own member). Members may be
        users or groups (a `members` entry names either); an id that is neither (a deleted user) is left out."""
        seen: set[str] = {group_id}
        found: dict[str, Json] = {}
        pending = list(self.groups[group_id]["members"])
        while pending:
            member_id = pending.pop()
            if member_id in seen:
                continue
            seen.add(member_id)
            if member_id in self.users:
                found[member_id] = self.users[member_id]
            elif member_id in self.groups:
                found[member_id] = self.groups[member_id]
                pending.extend(self.groups[member_id]["members"])
        return [found[key] for key in sorted(found)]

    # licenses --------------------------------------------------------------------------------------
    # licenseassignmentstate.md: licenseAssignmentStates lists every assignment, direct ones with a null
    # assignedByGroup; a fixture that lists assignedLicenses only gets the direct states they imply.
    def recount_seats(self) -> None:
        for sku in self.skus.values():
            sku["consumedUnits"] = 0
        for user in self.users.values():
            self._consume(user, +1)

    def _consume(self, user: Json, delta: int) -> None:
        for assigned in user.get("assignedLicenses") or []:
            sku = self.skus.get(str(assigned.get("skuId", "")).lower())
            if sku is not None:
                sku["consumedUnits"] = max(0, int(sku.get("consumedUnits", 0)) + delta)

    @staticmethod
    def free_seats(sku: Json) -> int:
        return int(sku.get("prepaidUnits", {}).get("enabled", 0)) - int(sku.get("consumedUnits", 0))

    # sign-ins --------------------------------------------------------------------------------------
    def add_signin(self, entry: Json) -> None:
        key = signin_sort_key(entry)
        index = bisect.bisect_left(self._signin_keys, key)
        self._signin_keys.insert(index, key)
        self.signins.insert(index, entry)

    def signins_after(self, key: tuple[float, str] | None) -> list[Json]:
        if key is None:
            return self.signins
        return self.signins[bisect.bisect_right(self._signin_keys, key) :]

    def now(self) -> datetime:
        return self.clock.now()


def add_direct_license_states(user: Json, when: str) -> None:
    """Give every assigned licence that no state covers a direct licenseAssignmentState (assignedByGroup
    null), as Graph lists it."""
    states = user.setdefault("licenseAssignmentStates", [])
    covered = {str(state.get("skuId", "")).lower() for state in states}
    for assigned in user.get("assignedLicenses") or []:
        sku_id = str(assigned.get("skuId", ""))
        if sku_id.lower() not in covered:
            states.append(direct_license_state(sku_id, assigned.get("disabledPlans") or [], when))


def direct_license_state(sku_id: str, disabled_plans: list[Any], when: str) -> Json:
    return {
        "assignedByGroup": None,
        "disabledPlans": list(disabled_plans),
        "error": "None",
        "lastUpdatedDateTime": when,
        "skuId": sku_id,
        "state": "Active",
    }


def pending_guest(mail: str, display_name: str | None, tenant_domain: str, stamp: str) -> Json:
    """The Guest user an invitation to a new address creates (PendingAcceptance, the `#EXT#` UPN, only the host
    tenant's identity until redeemed: contract_identities.py). Used by POST /invitations and
    GraphSimulator.invite_guest."""
    from local.graph_sim.contract_identities import host_identity

    local, _, domain = mail.partition("@")
    upn = f"{local}_{domain}#EXT#@{tenant_domain}"
    return {
        "id": str(uuid.uuid4()),
        "displayName": display_name or local,
        "givenName": None,
        "surname": None,
        "mail": mail,
        "otherMails": [mail],
        "userPrincipalName": upn,
        "userType": "Guest",
        "externalUserState": "PendingAcceptance",
        "externalUserStateChangeDateTime": stamp,
        "creationType": "Invitation",
        "createdDateTime": stamp,
        "accountEnabled": True,
        "usageLocation": None,
        "assignedLicenses": [],
        "businessPhones": [],
        "jobTitle": None,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "signInActivity": None,
        "sponsors": [],
        "identities": [host_identity(upn, tenant_domain)],
    }
