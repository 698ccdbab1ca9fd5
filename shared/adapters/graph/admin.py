"""Graph operations for setting guestwarden up and checking it: service principals, app role assignments, and
probes. The same gateway (client, retries, GraphError) as shared/adapters/graph/gateway.py, kept apart because the
flows never need these calls (and must not hold the permissions that make them).

Granting app roles needs `AppRoleAssignment.ReadWrite.All` (+ `Application.Read.All`) or a Privileged Role
Administrator signed in: that is the operator running `guestwarden setup grant-permissions`, never the app.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.service_principal import ServicePrincipal as SdkServicePrincipal
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from shared.adapters.graph.gateway import GraphGateway
from shared.permissions import GRAPH_APP_ID, RoleAssignment, ServicePrincipal
from shared.ports.graph import GraphError

SP_FIELDS = ["id", "appId", "displayName", "appRoles"]


def _is_guid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _sp(sp: SdkServicePrincipal) -> ServicePrincipal:
    roles = {
        str(role.value): str(role.id)
        for role in sp.app_roles or ()
        if role.value and role.id and "Application" in (role.allowed_member_types or ())
    }
    return ServicePrincipal(str(sp.id), str(sp.app_id or ""), str(sp.display_name or ""), roles)


def _assignment(item: AppRoleAssignment) -> RoleAssignment:
    return RoleAssignment(str(item.id), str(item.app_role_id), str(item.resource_id))


class GraphAdminGateway(GraphGateway):
    async def __aenter__(self) -> GraphAdminGateway:
        return self

    async def service_principal_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        if not _is_guid(app_id):
            raise ValueError(f"not an appId (a GUID): {app_id!r}")
        builder = self.client.service_principals
        query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
            filter=f"appId eq '{app_id}'", select=SP_FIELDS
        )
        found = await self._call(
            f"find service principal of app {app_id}",
            lambda: builder.get(RequestConfiguration(query_parameters=query)),
        )
        values = (found.value if found else None) or []
        return _sp(values[0]) if values else None

    async def service_principal(self, key: str) -> ServicePrincipal | None:
        """By object id, else by appId (a managed identity is known by either); None if neither matches."""
        if not _is_guid(key):
            raise ValueError(f"not a service principal object id or appId (a GUID): {key!r}")
        builder = self.client.service_principals.by_service_principal_id(key)
        query = builder.ServicePrincipalItemRequestBuilderGetQueryParameters(select=SP_FIELDS)
        try:
            sp = await self._call(
                f"get service principal {key}", lambda: builder.get(RequestConfiguration(query_parameters=query))
            )
        except GraphError as exc:
            if not exc.not_found:
                raise
            return await self.service_principal_by_app_id(key)
        return _sp(sp) if sp is not None else None

    async def app_role_assignments(self, principal_id: str) -> list[RoleAssignment]:
        """Every app role the principal holds (all resources, all pages)."""
        builder = self.client.service_principals.by_service_principal_id(principal_id).app_role_assignments
        page: Any = await self._call(f"list app role assignments of {principal_id}", builder.get)
        found: list[RoleAssignment] = []
        while page is not None:
            found += [_assignment(item) for item in page.value or ()]
            if not page.odata_next_link:
                break
            page = await self._call("list app role assignments (next page)", builder.with_url(page.odata_next_link).get)
        return found

    async def grant_app_role(self, principal_id: str, resource_id: str, app_role_id: str) -> RoleAssignment:
        """POST appRoleAssignments (not idempotent: only a 429 is retried)."""
        builder = self.client.service_principals.by_service_principal_id(principal_id).app_role_assignments
        body = AppRoleAssignment(
            principal_id=UUID(principal_id), resource_id=UUID(resource_id), app_role_id=UUID(app_role_id)
        )
        created = await self._call_not_idempotent(
            f"grant app role {app_role_id} to {principal_id}",
            lambda: builder.post(body),
        )
        if created is None:
            raise GraphError(None, "emptyResponse", "Graph returned no assignment", operation="grant app role")
        return _assignment(created)

    async def remove_app_role_assignment(self, principal_id: str, assignment_id: str) -> None:
        builder = self.client.service_principals.by_service_principal_id(principal_id).app_role_assignments
        try:
            await self._call(
                f"remove app role assignment {assignment_id}",
                lambda: builder.by_app_role_assignment_id(assignment_id).delete(),
            )
        except GraphError as exc:
            if not exc.not_found:  # already gone: what we wanted
                raise

    async def probe_sign_in_activity(self) -> None:
        """`GET /users?$select=signInActivity&$top=1`: raises GraphError 403 without Entra ID P1 (or without
        AuditLog.Read.All)."""
        users = self.client.users
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["signInActivity"], top=1)
        await self._call("read signInActivity", lambda: users.get(RequestConfiguration(query_parameters=query)))

    async def probe_users(self) -> None:
        """`GET /users?$top=1&$select=id`: Graph answers, and the token may read users (User.Read.All)."""
        users = self.client.users
        query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id"], top=1)
        await self._call("read one user", lambda: users.get(RequestConfiguration(query_parameters=query)))

    async def granted_graph_roles(self, principal_key: str) -> set[str]:
        """The Microsoft Graph app role values granted to a service principal (object id or appId)."""
        graph = await self.service_principal_by_app_id(GRAPH_APP_ID)
        if graph is None:
            raise GraphError(404, "Request_ResourceNotFound", "no Microsoft Graph service principal in the tenant")
        target = await self.service_principal(principal_key)
        if target is None:
            raise GraphError(
                404, "Request_ResourceNotFound", f"no service principal with object id or appId {principal_key}"
            )
        value_of = {role_id: value for value, role_id in graph.app_roles.items()}
        assignments = await self.app_role_assignments(target.id)
        return {value_of[a.app_role_id] for a in assignments if a.resource_id == graph.id and a.app_role_id in value_of}
