"""Use case: the operator dashboard (functions/dashboard.py hands every request here; docs/dashboard.md).

Pages read guestwarden's own state (the sweep's stage records and run records, the risk poll's incident
records, the subscription record, the audit log), never a directory scan: only the guests shown on one page are
looked up by id for their display names. Every GET is free of side effects; every action is a POST from a
confirm page, carrying that page's anti-forgery code (bound to the signed-in principal, the action and its
target, and the time it was shown), from the dashboard's own origin, by a principal with GuestWarden.Operator,
and audited with the operator as actor.

Sign-in is App Service Authentication's (the X-MS-CLIENT-PRINCIPAL header, shared.domain.dashboard); locally a
development principal (DASHBOARD_DEV_SIGNIN), which the settings refuse in Azure.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.domain.census import CHART_DAYS, Census, RunSummary, StageTally, next_step
from shared.domain.dashboard import (
    OPERATOR,
    PRINCIPAL_HEADER,
    READER,
    Principal,
    Refused,
    form_code,
    form_code_ok,
    parse_client_principal,
)
from shared.domain.stale import Stage, StageMemory, StalePolicy
from shared.ports.dashboard import DashboardRenderer, GuestNames
from shared.ports.reports import ReportStore, ReportStoreError
from shared.ports.state import StateStore
from shared.services.audit import Auditor
from shared.services.census import load_census, load_seats, load_tally, tickets_opened
from shared.services.dashboard_deadletters import check_target, dead_letters_page, resubmit
from shared.services.deadletters import DeadLetterDeps, load_dead_letters
from shared.services.posture import latest_posture
from shared.services.stale.deps import RECORD_KIND as STAGE_KIND
from shared.services.stale.journal import RUN_KIND
from shared.services.stale.restore import RestoreOutcome

log = logging.getLogger(__name__)

ROUTE = "dashboard"
"""Pages are under /api/dashboard/."""
RISK_GUEST_KIND = "risk-guest"
SUBSCRIPTION_KIND, SUBSCRIPTION_KEY = "subscription", "users"
DUE_DAYS = 14
ACTIONS = ("restore-run", "keep-guest", "resubmit-deadletters")
MAX_FORM_BYTES = 4096

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_FILES: Mapping[str, str] = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
}
"""Every file the dashboard serves, by name: nothing else under shared/static (or above it) can be asked for."""

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
"""Every page: only the app's own script and style files, no inline script or style, no framing, not cached."""


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    key: str
    base_url: str
    page_size: int = 50
    dev_principal: Principal | None = None
    """DASHBOARD_DEV_SIGNIN: who a request without App Service's principal is (local development only)."""
    platform_auth_missing: bool = False
    """In Azure without App Service Authentication (WEBSITE_AUTH_ENABLED): the principal header could be forged,
    so nothing is served."""
    renew_before: timedelta = timedelta(hours=24)
    """SUBSCRIPTION_RENEW_BEFORE_HOURS: a subscription closer to its expiry than this should have been renewed."""


@dataclass(frozen=True, slots=True)
class DashboardDeps:
    state: StateStore
    templates: DashboardRenderer
    names: GuestNames
    config: DashboardConfig
    policy: StalePolicy
    clock: Callable[[], datetime]
    restore_run: Callable[[str, str], Awaitable[list[RestoreOutcome]]]
    """(run id, actor) -> the outcomes of shared.services.stale.restore_run."""
    keep_guest: Callable[[str, str], Awaitable[tuple[str, str]]] | None = None
    """(guest id, actor) -> (status, detail) of shared.services.attestation.operator_keep; None when attestation
    links are off (STALE_ATTEST_SIGNING_KEY)."""
    reports: ReportStore | None = None
    """Where the sweep's reports are (REPORT_STORE): the run pages serve them."""
    dead_letters: DeadLetterDeps | None = None
    """Service Bus dead letters (shared.services.dashboard_deadletters); None when Service Bus is not configured."""


@dataclass(frozen=True, slots=True)
class DashboardRequest:
    method: str
    path: str
    """The part after /api/dashboard/ ("" for the overview)."""
    params: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DashboardReply:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))


REPORT_TYPES: Mapping[str, str] = {"report.html": "text/html; charset=utf-8", "report.csv": "text/csv; charset=utf-8"}
REPORT_HEADERS: Mapping[str, str] = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
"""A sweep's report: its own inline style sheet (shared/templates/stale/report.html), no script, no images."""


async def handle_dashboard(request: DashboardRequest, deps: DashboardDeps) -> DashboardReply:
    """The reply to one request (never raises for bad input: a 4xx page)."""
    path = request.path.strip("/")
    if path.startswith("static/"):
        return static_file(path.removeprefix("static/"))
    principal: Principal | None = None
    try:
        principal = _principal(request, deps.config)
        method = request.method.upper()
        if method == "GET":
            return await _get(path, request, principal, deps)
        if method == "POST":
            return await _post(path, request, principal, deps)
        raise Refused(405, "only GET and POST are served here")
    except Refused as refused:
        name = principal.name if principal else ""
        return _html(deps, refused.status, "refused", principal, detail=refused.detail, who=name)


def static_file(name: str) -> DashboardReply:
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return DashboardReply(404, b"not found", "text/plain; charset=utf-8")
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return DashboardReply(200, (STATIC_DIR / name).read_bytes(), content_type, headers)


def _principal(request: DashboardRequest, config: DashboardConfig) -> Principal:
    if config.platform_auth_missing:
        raise Refused(503, "App Service Authentication is off for this app: the dashboard is not served")
    headers = {k.lower(): v for k, v in request.headers.items()}
    header = headers.get(PRINCIPAL_HEADER)
    principal = parse_client_principal(header) if header else config.dev_principal
    if principal is None:
        raise Refused(401, "sign in first (App Service Authentication)")
    if not principal.can_read:
        raise Refused(403, f"{principal.name} does not have the app role {READER} or {OPERATOR}")
    return principal


def _html(deps: DashboardDeps, status: int, page: str, principal: Principal | None, **context: Any) -> DashboardReply:
    body = deps.templates.page(page, {"page": page, "me": principal, "now": deps.clock(), **context})
    return DashboardReply(status, body.encode("utf-8"))


# --- pages ----------------------------------------------------------------------------------------------------


async def _get(path: str, request: DashboardRequest, principal: Principal, deps: DashboardDeps) -> DashboardReply:
    parts = path.split("/") if path else []
    if not parts:
        return _html(deps, 200, "overview", principal, **await overview(deps))
    if parts == ["guests"]:
        return _html(deps, 200, "guests", principal, **await guest_list(deps, request.params))
    if len(parts) == 2 and parts[0] == "guests":
        return _html(deps, 200, "guest", principal, **await guest_page(deps, parts[1]))
    if parts == ["runs"]:
        return _html(deps, 200, "runs", principal, runs=await runs(deps))
    if len(parts) == 2 and parts[0] == "runs":
        return _html(deps, 200, "run", principal, **await run_page(deps, parts[1]))
    if len(parts) == 3 and parts[0] == "runs" and parts[2] in REPORT_TYPES:
        return await run_report(deps, parts[1], parts[2])
    if parts == ["risk"]:
        return _html(deps, 200, "risk", principal, **await risk(deps))
    if parts == ["posture"]:
        return _html(deps, 200, "posture", principal, posture=await latest_posture(deps.state))
    if parts == ["deadletters"]:
        return _html(deps, 200, "deadletters", principal, **await dead_letters_page(deps.dead_letters))
    if parts == ["confirm"]:
        return _confirm(request, principal, deps)
    raise Refused(404, "no such page")


async def _memories(deps: DashboardDeps) -> dict[str, StageMemory]:
    return {r.key: StageMemory.from_json(r.value) async for r in deps.state.list_records(STAGE_KIND)}


async def overview(deps: DashboardDeps) -> dict[str, Any]:
    """The overview, from the aggregates guestwarden keeps (shared.services.census) and a few small records: no
    listing that grows with the tenant (bench/dashboard.py)."""
    now = deps.clock()
    tally = await load_tally(deps.state)
    if tally is None:  # no sweep has finished since the tally exists: count the stage records themselves
        tally = StageTally.of((await _memories(deps)).values())
    stages = tally.counts()
    due = tally.due(now.date(), DUE_DAYS, deps.policy)
    census = await load_census(deps.state)
    if census is None:
        census = Census()
        for run in await runs(deps):  # before the first census: the run records (few, on a new install)
            census.ran(RunSummary(run["id"], run["started"] or now, run["dry_run"], run["status"], "", run["outcomes"]))
    tickets = await tickets_opened(deps.state, now)
    if tickets is None:  # none counted yet (before this version): the audit log's last 30 days
        entries = [e async for e in deps.state.query(now - timedelta(days=30), action="risk-ticket")]
        tickets = sum(1 for e in entries if e.outcome == "opened")
    return {
        "stages": stages,
        "in_lifecycle": sum(stages.values()),
        "due": due,
        "due_total": sum(due.values()),
        "due_days": DUE_DAYS,
        "census": census,
        "last_run": census.last_run,
        "last_dry_run": census.last_dry_run,
        "open_incidents": len(await _incidents(deps)),
        "tickets": tickets,
        "subscription": await _subscription(deps, now),
        "seats": await load_seats(deps.state),
        "chart": _chart(census.chart(now.date())),
        "chart_days": CHART_DAYS,
        "dead_letters": await load_dead_letters(deps.state),
    }


async def _subscription(deps: DashboardDeps, now: datetime) -> dict[str, Any]:
    """The /users subscription as the keeper last recorded it (no Graph read): healthy while it is further from
    its expiry than the keeper's renewal window; inside the window the keeper should have renewed it."""
    record = await deps.state.get(SUBSCRIPTION_KIND, SUBSCRIPTION_KEY)
    expires = _when(record.value.get("expiresAt")) if record else None
    if record is None or expires is None:
        health, advice = "missing", "no subscription recorded: is the subscription keeper timer running?"
    elif expires <= now:
        health, advice = "expired", "no change notifications arrive: run `guestwarden subscriptions ensure`"
    elif expires - now <= deps.config.renew_before:
        health, advice = "renewal due", "inside the renewal window: check that the subscription keeper timer runs"
    else:
        health, advice = "healthy", ""
    hours = round((expires - now).total_seconds() / 3600, 1) if expires else None
    return {
        "id": record.value.get("id") if record else None,
        "expires": expires,
        "hours_left": hours,
        "health": health,
        "healthy": health == "healthy",
        "advice": advice,
    }


def _chart(chart: dict[str, Any]) -> dict[str, Any]:
    """The chart's data for uPlot (JSON in a data- attribute, no inline script) and the same numbers as table rows
    (the nights with any action), per action and per home domain."""
    x = [int(datetime.combine(d, time(), UTC).timestamp()) for d in chart["days"]]
    out: dict[str, Any] = {}
    for name in ("actions", "domains"):
        series: dict[str, list[int]] = chart[name]
        rows = [
            (day, *(values[i] for values in series.values()))
            for i, day in enumerate(chart["labels"])
            if any(values[i] for values in series.values())
        ]
        data = json.dumps({"x": x, "series": series}, separators=(",", ":"))
        out[name] = {"json": data, "names": list(series), "rows": rows}
    return out


async def _incidents(deps: DashboardDeps) -> list[dict[str, Any]]:
    found = []
    async for record in deps.state.list_records(RISK_GUEST_KIND):
        incidents = record.value.get("incidents")
        for incident in incidents if isinstance(incidents, list) else []:
            if isinstance(incident, dict):
                found.append({"guest": record.key, **incident})
    return sorted(found, key=lambda i: str(i.get("lastSeen")), reverse=True)


async def risk(deps: DashboardDeps) -> dict[str, Any]:
    since = deps.clock() - timedelta(days=30)
    entries = [e async for e in deps.state.query(since) if e.action in ("risk-notify", "risk-ticket")]
    return {"incidents": await _incidents(deps), "entries": list(reversed(entries))}


def _when(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


async def runs(deps: DashboardDeps) -> list[dict[str, Any]]:
    """The sweep's runs, newest first (their run records)."""
    found = []
    async for record in deps.state.list_records(RUN_KIND):
        v: dict[str, Any] = record.value
        found.append(
            {
                "id": record.key,
                "started": _when(v.get("started")),
                "dry_run": bool(v.get("dryRun", True)),
                "phase": str(v.get("phase", "")),
                "status": str(v.get("status", v.get("phase", ""))),
                "message": str(v.get("message", "")),
                "outcomes": dict(v.get("outcomes") or {}),
                "reports": [str(r) for r in v.get("reports") or ()],
            }
        )
    return sorted(found, key=lambda r: r["started"] or datetime.min.replace(tzinfo=deps.clock().tzinfo), reverse=True)


async def run_page(deps: DashboardDeps, run_id: str) -> dict[str, Any]:
    record = next((r for r in await runs(deps) if r["id"] == run_id), None)
    if record is None:
        raise Refused(404, "no such run")
    since = (record["started"] or deps.clock()) - timedelta(days=1)
    acted = [e async for e in deps.state.query(since) if e.correlation_id == run_id and e.action.startswith("stale-")]
    restorable = sum(1 for e in acted if e.action in ("stale-disable", "stale-delete") and e.outcome == "done")
    return {"run": record, "entries": acted, "restorable": restorable}


GUEST_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")


async def run_report(deps: DashboardDeps, run_id: str, kind: str) -> DashboardReply:
    """A run's HTML or CSV report from the report store (only the two names a run's reports have)."""
    if deps.reports is None or not GUEST_ID.fullmatch(run_id):
        raise Refused(404, "no such report")
    extension = kind.rsplit(".", 1)[1]
    try:
        body = await deps.reports.read(f"stale-{run_id}.{extension}")
    except ReportStoreError as exc:
        log.warning("dashboard: report of run %s not readable: %s", run_id, exc)
        raise Refused(404, "this run's report is not in the report store") from None
    headers = dict(REPORT_HEADERS)
    if extension == "csv":
        headers["Content-Disposition"] = f'attachment; filename="stale-{run_id}.csv"'
    return DashboardReply(200, body, REPORT_TYPES[kind], headers)


async def guest_list(deps: DashboardDeps, params: Mapping[str, str]) -> dict[str, Any]:
    """The guests guestwarden has in its lifecycle, newest first, filtered by `q`: part of the object id or of the
    name the sweep recorded, or a stage. Names are read again from Graph for the shown page only (a rename since
    the sweep shows; a guest whose record predates names is found by id)."""
    query = (params.get("q") or "").strip()[:100]
    page = max(1, _int(params.get("page"), 1))
    memories = await _memories(deps)
    rows = sorted(memories.items(), key=lambda kv: (kv[1].since, kv[0]), reverse=True)
    wanted = query.lower()
    if wanted:
        rows = [(k, m) for k, m in rows if wanted in k.lower() or wanted in m.name.lower() or wanted == str(m.stage)]
    size = deps.config.page_size
    shown = rows[(page - 1) * size : page * size]
    names = await deps.names.names([k for k, _ in shown]) if shown else {}
    guests = [_guest_row(k, m, names.get(k) or m.name, deps.policy) for k, m in shown]
    pages = max(1, -(-len(rows) // size))
    return {"guests": guests, "q": query, "page_no": page, "pages": pages, "total": len(rows)}


def _guest_row(guest_id: str, memory: StageMemory, name: str, policy: StalePolicy) -> dict[str, Any]:
    step, when = next_step(memory, policy)
    return {"id": guest_id, "name": name, "stage": str(memory.stage), "since": memory.since, "next": step, "when": when}


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and len(value) < 7 else default


async def guest_page(deps: DashboardDeps, guest_id: str) -> dict[str, Any]:
    if not GUEST_ID.fullmatch(guest_id):
        raise Refused(404, "no such guest")
    record = await deps.state.get(STAGE_KIND, guest_id)
    memory = StageMemory.from_json(record.value) if record else None
    since = deps.clock() - timedelta(days=400)
    timeline = [e async for e in deps.state.query(since, subject=guest_id)]
    names = await deps.names.names([guest_id])
    step, when = next_step(memory, deps.policy) if memory else ("nothing: guestwarden has not acted on it", None)
    keepable = memory is not None and memory.stage in (Stage.WARNED, Stage.DISABLED) and deps.keep_guest is not None
    return {
        "guest": {"id": guest_id, "name": names.get(guest_id) or (memory.name if memory else "")},
        "memory": memory,
        "timeline": list(reversed(timeline)),
        "next": step,
        "when": when,
        "keepable": keepable,
    }


# --- actions --------------------------------------------------------------------------------------------------


def _confirm(request: DashboardRequest, principal: Principal, deps: DashboardDeps) -> DashboardReply:
    action, target = request.params.get("action", ""), request.params.get("target", "")
    if action not in ACTIONS or not GUEST_ID.fullmatch(target):
        raise Refused(404, "no such action")
    if not principal.can_act:
        raise Refused(403, f"{principal.name} does not have the app role {OPERATOR}")
    if action == "resubmit-deadletters":
        check_target(deps.dead_letters, target)
    code = form_code(deps.config.key, principal, action, target, deps.clock())
    return _html(deps, 200, "confirm", principal, action=action, target=target, code=code)


def _same_origin(headers: Mapping[str, str], base_url: str) -> bool:
    """A cross-site POST is refused (defence in depth: the anti-forgery code is what makes a forged POST fail)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    site = lowered.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = lowered.get("origin")
    if origin is None:
        return True
    expected, actual = urlsplit(base_url), urlsplit(origin)
    return (actual.scheme, actual.netloc.lower()) == (expected.scheme, expected.netloc.lower())


async def _post(path: str, request: DashboardRequest, principal: Principal, deps: DashboardDeps) -> DashboardReply:
    if path != "act":
        raise Refused(404, "no such action")
    if not principal.can_act:
        raise Refused(403, f"{principal.name} does not have the app role {OPERATOR}")
    if not _same_origin(request.headers, deps.config.base_url):
        raise Refused(403, "the request did not come from the dashboard's own page")
    action, target = request.form.get("action", ""), request.form.get("target", "")
    if action not in ACTIONS or not GUEST_ID.fullmatch(target):
        raise Refused(400, "no such action")
    now = deps.clock()
    if not form_code_ok(deps.config.key, request.form.get("code", ""), principal, action, target, now):
        raise Refused(403, "the confirmation expired or was not used: confirm again")
    auditor = Auditor(deps.state, principal.actor, deps.clock)
    if action == "resubmit-deadletters":
        done = await resubmit(deps.dead_letters, target, principal, auditor)
        return _html(deps, 200, "done", principal, action=action, target=target, outcomes=[], **done)
    if action == "restore-run":
        outcomes = await deps.restore_run(target, principal.actor)
        counts = Counter(o.status for o in outcomes)
        await auditor.record("dashboard-restore-run", target, outcome="done", evidence={"outcomes": dict(counts)})
        log.info("dashboard: %s restored run %s (%s)", principal.name, target, dict(counts))
        return _html(deps, 200, "done", principal, action=action, target=target, outcomes=outcomes)
    if deps.keep_guest is None:
        raise Refused(409, "keeping a guest needs the attestation settings (STALE_ATTEST_SIGNING_KEY)")
    status, detail = await deps.keep_guest(target, principal.actor)
    if status != "keep":
        await auditor.record("dashboard-keep", target, outcome="refused", reason=status, evidence={"detail": detail})
        raise Refused(409, f"the guest was not kept: {detail}")
    return _html(deps, 200, "done", principal, action=action, target=target, detail=detail, outcomes=[])


class GraphGuestNames:
    """GuestNames by reading the shown guests by id, in `$batch`es (a page's worth: never a directory scan)."""

    def __init__(self, get_users: Callable[..., Awaitable[list[Any]]]) -> None:
        self._get_users = get_users

    async def names(self, user_ids: list[str]) -> dict[str, str]:
        try:
            users = await self._get_users(user_ids, with_sign_in_activity=False)
        except Exception:  # a name is decoration: the page shows the object id instead
            log.warning("dashboard: could not read the names of %d guest(s)", len(user_ids))
            return {}
        return {u.id: u.display_name or u.user_principal_name or "" for u in users}
