"""Use case: `guestwarden doctor`, is this deployment able to run the flows it enables? Each check ends ok, warn
or fail with what to fix. The judging is pure (functions of what was observed); `run_doctor` observes through
the small ports in DoctorPorts, so the same checks run against Azure, the local world, or fakes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.domain.posture import Check as PostureCheck
from shared.permissions import affected_by, required_permissions
from shared.settings import Feature, Settings, SettingsError

Status = Literal["ok", "warn", "fail"]
GRANT_COMMAND = "guestwarden setup grant-permissions --identity <managed identity object id or appId>"
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Failure:
    """An observation that failed: what went wrong (status/code when Graph answered)."""

    message: str
    status: int | None = None
    code: str | None = None


def all_ok(checks: Iterable[Check]) -> bool:
    """True unless a check failed (warnings do not fail the doctor)."""
    return all(check.status != "fail" for check in checks)


# --- pure judges ------------------------------------------------------------------------------------------
def judge_settings(error: SettingsError | None, features: Sequence[Feature]) -> Check:
    names = ", ".join(f.value for f in features)
    if error is None:
        return Check("settings", "ok", f"valid for: {names}")
    return Check(
        "settings", "fail", "; ".join(error.problems), "set the app settings named above (docs/configuration.md)"
    )


def token_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded without verifying the signature (we only read what we were given).
    None when the token is not a JWT (e.g. the simulator's fixed local token)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def judge_token(claims: dict[str, Any] | None, failure: Failure | None) -> Check:
    if failure is not None:
        return Check(
            "graph token",
            "fail",
            f"no token for Graph: {failure.message}",
            "in Azure: enable the Function App's managed identity (AZURE_CLIENT_ID for a user-assigned one); "
            "on a workstation: `az login`",
        )
    if claims is None:
        return Check("graph token", "warn", "a token was issued, but it is not a JWT: its roles cannot be read")
    who = claims.get("app_displayname") or claims.get("appid") or claims.get("upn") or "?"
    kind = "app-only" if "roles" in claims or claims.get("idtyp") == "app" else "delegated (a signed-in user)"
    return Check("graph token", "ok", f"{kind} token for {who} (object id {claims.get('oid', '?')})")


def judge_reachable(failure: Failure | None) -> Check:
    if failure is None:
        return Check("graph reachable", "ok", "Graph answered `GET /users?$top=1`")
    fix = "check GRAPH_BASE_URL and the network path to Graph"
    if failure.status in (401, 403):
        fix = f"grant User.Read.All: {GRANT_COMMAND}"
    return Check("graph reachable", "fail", failure.message, fix)


def granted_from_claims(claims: dict[str, Any] | None) -> set[str] | None:
    """The Graph app roles of an app-only token; None for a delegated or unreadable token (no `roles` to
    judge: a user's token carries scopes, and an app token without roles has none granted)."""
    if claims is None:
        return None
    if "roles" in claims:
        return {str(role) for role in claims["roles"]}
    if claims.get("idtyp") == "app" or ("scp" not in claims and "appid" in claims):
        return set()
    return None


OPTIONAL_FEATURES = frozenset({Feature.POSTURE})
"""Features that degrade to `unknown` without their permissions (the posture checks): a missing role they alone
need warns, never fails."""


def judge_permissions(
    granted: set[str] | None, source: str, features: Sequence[Feature], settings: Settings | None
) -> Check:
    required = required_permissions(features, settings)
    essential = required_permissions([f for f in features if f not in OPTIONAL_FEATURES], settings)
    if granted is None:
        return Check(
            "graph permissions",
            "warn",
            f"could not read the granted roles ({source}); required: {', '.join(sorted(required))}",
            "run the doctor as the app's identity, or pass --identity to read its app role assignments",
        )
    missing = sorted(required - granted)
    if not missing:
        return Check("graph permissions", "ok", f"all {len(required)} required roles granted ({source})")
    costs = [f"{perm} ({'; '.join(affected_by(perm, features, settings))})" for perm in missing]
    return Check(
        "graph permissions",
        "fail" if essential & set(missing) else "warn",
        f"missing {', '.join(missing)} ({source}): " + " | ".join(costs),
        f"{GRANT_COMMAND} (grants exactly the missing roles; a new token carries them within the hour)",
    )


def judge_premium(failure: Failure | None, features: Sequence[Feature]) -> Check:
    stale = Feature.STALE in features
    if failure is None:
        return Check("entra id p1", "ok", "signInActivity is readable (Entra ID P1 or P2)")
    if failure.code == NON_PREMIUM:
        affected = "the stale sweep (flow 4) cannot run: it refuses without signInActivity" if stale else ""
        return Check(
            "entra id p1",
            "fail" if stale else "warn",
            "no Entra ID P1/P2 in this tenant: signInActivity is unavailable. "
            + (affected or "guest inventory shows no last activity"),
            "license Entra ID P1 or P2 for the tenant"
            + (", or leave the stale sweep disabled (--flows without stale)" if stale else ""),
        )
    if failure.status == 403:
        return Check(
            "entra id p1",
            "fail" if stale else "warn",
            f"signInActivity refused: {failure.message}",
            f"grant AuditLog.Read.All: {GRANT_COMMAND}",
        )
    return Check("entra id p1", "warn", f"could not tell: {failure.message}", "check again when Graph answers")


POSTURE_STATUS: dict[str, Status] = {"pass": "ok", "warn": "warn", "fail": "warn", "unknown": "warn"}
"""A posture finding is the tenant's configuration, not a fault of this deployment: it warns at most (the
doctor's own Entra ID P1 check fails when a flow cannot run without it)."""


def judge_posture(check: PostureCheck) -> Check:
    detail = "; ".join([f"{check.status.value}: {check.summary}", *check.evidence])
    fix = f"{check.fix} ({check.portal})" if check.fix and check.portal else check.fix
    return Check(f"posture: {check.title.lower()}", POSTURE_STATUS[check.status.value], detail, fix)


def judge_subscription(healthy: bool | None, advice: str, failure: Failure | None) -> Check:
    if failure is not None:
        return Check("subscription", "fail", failure.message, "fix the Graph check above first")
    if healthy:
        return Check("subscription", "ok", "the /users subscription is live, ours, and far from expiry")
    return Check("subscription", "fail", advice, "`guestwarden subscriptions ensure`, then watch the keeper timer")


def judge_queue(queue: str, failure: Failure | None) -> Check:
    if failure is None:
        return Check(f"queue {queue}", "ok", "sender and receiver opened")
    return Check(
        f"queue {queue}",
        "fail",
        failure.message,
        "check SERVICEBUS_CONNECTION (or the namespace), that the queue exists, and that the identity has "
        "Azure Service Bus Data Sender and Data Receiver on it",
    )


def judge_state(failure: Failure | None) -> Check:
    if failure is None:
        return Check("state store", "ok", "read a record")
    return Check(
        "state store",
        "fail",
        failure.message,
        "check STATE_BACKEND and its connection (STATE_TABLE_CONNECTION / STATE_TABLE_ENDPOINT with the "
        "Storage Table Data Contributor role, or STATE_SQLITE_PATH)",
    )


# --- observing -----------------------------------------------------------------------------------------------
Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class DoctorPorts:
    """How the doctor observes the world. Each probe raises on failure; `describe` turns that into a Failure."""

    token: Callable[[], Awaitable[str]]
    reach_graph: Probe
    sign_in_activity: Probe
    subscription: Callable[[], Awaitable[tuple[bool, str]]]
    queue: Callable[[str], Awaitable[None]]
    state: Probe
    describe: Callable[[BaseException], Failure | None]
    """A Failure for the errors the doctor expects (Graph, queue, state, transport), None to re-raise."""
    assignments: Callable[[], Awaitable[set[str]]] | None = None
    """The identity's granted Graph roles from its app role assignments (when --identity is given)."""
    posture: Callable[[], Awaitable[Sequence[PostureCheck]]] | None = None
    """The posture checks that concern guestwarden's own working (Entra ID P1/P2, risk policies and guests)."""


async def _observe(probe: Callable[[], Awaitable[Any]], describe: Callable[[BaseException], Failure | None]) -> Any:
    try:
        return await probe()
    except Exception as exc:
        failure = describe(exc)
        if failure is None:
            raise
        return failure


async def run_doctor(
    ports: DoctorPorts, settings: Settings, features: Sequence[Feature], queues: Sequence[str]
) -> list[Check]:
    """Every check for these features, in a stable order. Never raises for an expected failure."""
    checks = [judge_settings(None, features)]
    token = await _observe(ports.token, ports.describe)
    claims = token_claims(token) if isinstance(token, str) else None
    checks.append(judge_token(claims, token if isinstance(token, Failure) else None))
    reach = await _observe(ports.reach_graph, ports.describe)
    checks.append(judge_reachable(reach if isinstance(reach, Failure) else None))
    granted, source = granted_from_claims(claims), "from the token's roles claim"
    if ports.assignments is not None:
        found = await _observe(ports.assignments, ports.describe)
        if isinstance(found, Failure):
            checks.append(Check("identity roles", "warn", f"could not read app role assignments: {found.message}"))
        else:
            granted, source = found, "from the identity's app role assignments"
    checks.append(judge_permissions(granted, source, features, settings))
    premium = await _observe(ports.sign_in_activity, ports.describe)
    checks.append(judge_premium(premium if isinstance(premium, Failure) else None, features))
    if Feature.SUBSCRIPTION in features:
        status = await _observe(ports.subscription, ports.describe)
        if isinstance(status, Failure):
            checks.append(judge_subscription(None, "", status))
        else:
            checks.append(judge_subscription(status[0], status[1], None))
    for queue in queues:

        async def probe(name: str = queue) -> None:
            await ports.queue(name)

        outcome = await _observe(probe, ports.describe)
        checks.append(judge_queue(queue, outcome if isinstance(outcome, Failure) else None))
    state = await _observe(ports.state, ports.describe)
    checks.append(judge_state(state if isinstance(state, Failure) else None))
    if ports.posture is not None:
        checks += [judge_posture(check) for check in await ports.posture()]
    return checks
