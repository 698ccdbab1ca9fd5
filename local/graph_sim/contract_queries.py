"""Contract table: which OData queries Microsoft Graph serves on the resources guestwarden reads.

Data, not code paths: the simulator's routes consult these rows, and every row names the Microsoft page it comes
from (in microsoftgraph/microsoft-graph-docs-contrib). A query the rows do not list is refused the way Graph
refuses it: 400 `Request_UnsupportedQuery`. tests/integration/test_graph_sim_contract_queries.py checks each row
both ways (accepted as documented, refused otherwise).

Legend: DEFAULT works without advanced query parameters; ADVANCED needs the `ConsistencyLevel: eventual` header
and `$count=true` (aad-advanced-queries.md). `null` is `eq null` (and `ne null`, advanced).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Support = Literal["default", "advanced"]
DEFAULT: Final[Support] = "default"
ADVANCED: Final[Support] = "advanced"

FILTER_MATRIX = "includes/filter-directory-objects.md"
ADVANCED_QUERIES = "concepts/aad-advanced-queries.md"
USER_RESOURCE = "api-reference/v1.0/resources/user.md"
SIGNIN_LIST = "api-reference/v1.0/api/signin-list.md"


@dataclass(frozen=True)
class PropertyRow:
    """What `$filter` supports on one property, operator by operator, and where that is written."""

    resource: str
    prop: str
    operators: MappingProxyType[str, Support]
    source: str
    alone: bool = False
    """Cannot be combined with any other filter clause (signInActivity)."""

    def support(self, operator: str) -> Support | None:
        return self.operators.get(operator)


def _row(resource: str, prop: str, source: str, alone: bool = False, **operators: Support) -> PropertyRow:
    # keyword names cannot be `in`/`not`: in_ and not_ stand for them
    ops = {name.rstrip("_"): support for name, support in operators.items()}
    return PropertyRow(resource, prop.lower(), MappingProxyType(ops), source, alone)


D: Final[Support] = DEFAULT
A: Final[Support] = ADVANCED

# Rules that hold for every directory-object row (aad-advanced-queries.md, "Support for filter by properties"):
# `in` works by default wherever `eq` does; `ne` and `not` work only in advanced queries, on every property that
# supports `eq`; `endsWith` only in advanced queries, and only on mail, otherMails, userPrincipalName and
# proxyAddresses. gt and lt appear nowhere in the matrix: they are refused on every user property.
USER_FILTERS: tuple[PropertyRow, ...] = (
    _row("user", "accountEnabled", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=A, le=A, in_=D),
    _row("user", "createdDateTime", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=A),
    _row("user", "creationType", FILTER_MATRIX, eq=D, ne=A, not_=A, in_=D),
    _row("user", "displayName", FILTER_MATRIX, eq=D, ne=A, not_=A, in_=D, startswith=D, null=A),
    _row("user", "givenName", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=D, startswith=D, null=A),
    _row("user", "surname", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=D, startswith=D, null=A),
    _row("user", "id", f"{FILTER_MATRIX}; `in` by {ADVANCED_QUERIES}", eq=D, ne=A, not_=A, in_=D),
    _row("user", "mail", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=D, startswith=D, endswith=A),
    _row("user", "otherMails", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=D, startswith=D, endswith=A),
    _row("user", "usageLocation", FILTER_MATRIX, eq=D, ne=A, not_=A, ge=D, le=D, in_=D, startswith=D),
    _row("user", "userPrincipalName", FILTER_MATRIX, eq=D, ne=A, not_=A, le=D, in_=D, startswith=D, endswith=A),
    _row("user", "userType", FILTER_MATRIX, eq=D, ne=A, not_=A, in_=D, null=A),
    # Not in the matrix; user.md's property table lists eq, ne, not, in for both.
    _row("user", "externalUserState", USER_RESOURCE, eq=D, ne=A, not_=A, in_=D),
    _row("user", "externalUserStateChangeDateTime", USER_RESOURCE, eq=D, ne=A, not_=A, in_=D),
    # signInActivity: eq/ge/le by default, ne advanced; never together with another clause (user.md, and the
    # matrix's signInActivity row).
    *(
        _row("user", f"signInActivity/{field}", f"{FILTER_MATRIX}; {USER_RESOURCE}", alone=True, eq=D, ne=A, ge=D, le=D)
        for field in ("lastSignInDateTime", "lastNonInteractiveSignInDateTime", "lastSuccessfulSignInDateTime")
    ),
)

USER_ORDERBY: MappingProxyType[str, Support] = MappingProxyType(
    {"displayname": D, "userprincipalname": D, "createddatetime": A, "deleteddatetime": A}
)
"""aad-advanced-queries.md, "Support for sorting by properties": the user rows. `$filter` with `$orderby` in one
query is always advanced."""
USER_ORDERBY_SOURCE = ADVANCED_QUERIES

# /auditLogs/signIns (signin-list.md, "Optional query parameters" and its examples): the filters the risk poller
# needs. A reporting API, not a directory object: no advanced query parameters.
SIGNIN_FILTERS: tuple[PropertyRow, ...] = (
    _row("signIn", "createdDateTime", SIGNIN_LIST, eq=D, ge=D, le=D),
    _row("signIn", "userId", SIGNIN_LIST, eq=D),
    _row("signIn", "userPrincipalName", SIGNIN_LIST, eq=D, startswith=D),
    _row("signIn", "appId", SIGNIN_LIST, eq=D),
    _row("signIn", "status/errorCode", SIGNIN_LIST, eq=D),
    _row("signIn", "riskState", SIGNIN_LIST, eq=D),
    _row("signIn", "conditionalAccessStatus", SIGNIN_LIST, eq=D),
)

COUNT_SEGMENT_WITHOUT_EVENTUAL = ("Request_BadRequest", "$count is not currently supported.")
"""`GET /users/$count` without ConsistencyLevel: eventual is an error; `?$count=true` without it is ignored
(aad-advanced-queries.md, "Error handling for advanced queries")."""


def rows_by_property(rows: tuple[PropertyRow, ...]) -> dict[str, PropertyRow]:
    return {row.prop: row for row in rows}


USERS: Final = rows_by_property(USER_FILTERS)
SIGNINS: Final = rows_by_property(SIGNIN_FILTERS)
