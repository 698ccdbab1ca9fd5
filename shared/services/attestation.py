"""Use case: a sponsor answers a stale-guest warning through its signed link ("keep" or "remove now").

The HTTP function (functions/attest.py) hands every request here and sends back the page this returns.

- GET shows a page and changes nothing: mail scanners (Safe Links, antivirus gateways) open every link in a
  mail, so a GET that acted would act for them. It reads the token, the guest's stage and the guest's name.
- POST acts, once per lifecycle episode (the idempotency ledger's ("stale-attest", guest, episode) claim: the
  first answer of any sponsor decides; a replay, or another sponsor later, gets 409 and changes nothing). It
  must carry the confirmation page's anti-forgery code (shared.domain.attestation.confirm_code), come from the
  page's own origin when the browser says where it comes from (Origin, Sec-Fetch-Site), and its sponsor must
  still be a sponsor of the guest (or a configured fallback reviewer).
- keep: the guest's stage becomes KEPT until now + STALE_ATTEST_KEEP_DAYS (the pending disable/delete stops; a
  guest guestwarden had disabled is enabled again). remove: the guest is disabled now (PATCH + revoke sessions,
  like the sweep), still restorable, and counted against STALE_ATTEST_MAX_REMOVALS_PER_DAY; in a dry run
  (STALE_DRY_RUN) nothing is disabled.
- Every answer, and every refused link (forged, expired, tampered, replayed, not a sponsor), is audited; the
  sponsor's identity is the audit entry's actor. A refused token is audited by a digest, never by its text.

Pages are rendered by the AttestRenderer port (Jinja2, autoescaped) and sent with a strict
Content-Security-Policy, no caching and no referrer (the token is in the URL).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from shared.domain.attestation import (
    AttestToken,
    Choice,
    Judgement,
    TokenError,
    confirm_code,
    confirm_ok,
    judge,
    reviewer,
    sign,
    token_digest,
    verify,
)
from shared.domain.directory import DirectoryUser
from shared.domain.stale import Reclaim, Stage, StageMemory, StalePolicy, reclaim_of
from shared.ports.graph import AttestGraph, BatchOps, BatchRequest, BatchResult, GraphError
from shared.ports.state import Claim, ConflictError, StateStore
from shared.ports.templates import AttestRenderer
from shared.services.audit import Auditor
from shared.services.census import STAGE_KIND, write_stage
from shared.services.licensing import Alerting
from shared.services.stale.reclaim import give_back, reclaim_requests, reclaimed_from

log = logging.getLogger(__name__)

ROUTE = "attest"
"""The function's route: links are `<STALE_ATTEST_BASE_URL>/api/attest?t=<token>`."""
ACTION = "stale-attest"
RECORD_KIND = STAGE_KIND
"""The sweep's stage records (shared.services.stale.deps.RECORD_KIND): an answer changes the guest's stage."""
REMOVALS_KIND = "stale-attest-removals"
"""Removals by link per UTC day (the cap), one record per day."""
LEASE_SECONDS = 120
REFUSED_ACTOR = "attestation-link"

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": ("default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
"""Every page: no script, no inline style, no framing, nothing cached, and the token (in the URL) never sent on
as a referrer."""


@dataclass(frozen=True, slots=True)
class AttestConfig:
    keys: tuple[str, ...]
    """The signing key first (it signs), then the previous keys (they only verify: rotation)."""
    base_url: str
    """The app's public origin (STALE_ATTEST_BASE_URL)."""
    keep_days: int = 90
    link_days: int = 44
    """How long a link stays valid (STALE_ATTEST_LINK_DAYS, or by default the warning + disabled grace)."""
    max_removals_per_day: int = 20
    fallback_reviewers: tuple[str, ...] = ()
    dry_run: bool = True
    reclaim: StalePolicy = field(default_factory=StalePolicy)
    """The sweep's policy, for what "remove now" takes back with the account (STALE_RECLAIM_LICENSES)."""
    alerting: Alerting = field(default_factory=lambda: Alerting(None, ()))
    """Who is told when a kept guest's licences cannot be given back."""

    def url(self, token: str) -> str:
        return f"{self.base_url.rstrip('/')}/api/{ROUTE}?{urlencode({'t': token})}"

    def link(self, guest_id: str, sponsor: str, episode: str, now: datetime) -> str:
        """A sponsor's personal link for one guest's episode."""
        token = AttestToken(guest_id, sponsor, episode, now + timedelta(days=self.link_days))
        return self.url(sign(token, self.keys[0]))


@dataclass(frozen=True, slots=True)
class AttestDeps:
    graph: AttestGraph
    state: StateStore
    templates: AttestRenderer
    config: AttestConfig
    clock: Callable[[], datetime]
    owner: str = field(default_factory=lambda: f"attest-{uuid.uuid4()}")


@dataclass(frozen=True, slots=True)
class AttestRequest:
    method: str
    params: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]
    """Header names in any case."""


@dataclass(frozen=True, slots=True)
class AttestReply:
    status: int
    html: str
    headers: Mapping[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))


class _Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str, token: AttestToken | None = None) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail, self.token = status, reason, detail, token


async def handle_attestation(request: AttestRequest, deps: AttestDeps) -> AttestReply:
    """The page for one request (never raises for bad input: a 4xx page, audited)."""
    method = request.method.upper()
    raw = (request.params.get("t") if method == "GET" else request.form.get("t")) or ""
    try:
        if method == "GET":
            return await _show(raw, deps)
        if method == "POST":
            return await _answer(raw, request, deps)
        raise _Refused(405, "method", "only GET and POST are served here")
    except _Refused as refused:
        await _audit_refused(deps, raw, refused)
        return _page(deps, refused.status, "refused", reason=refused.reason, detail=refused.detail)
    except GraphError as exc:  # Graph unreachable or refusing a read: nothing was changed, the sponsor retries
        log.warning("attestation: Graph failed while answering (%s)", exc)
        return _page(deps, 503, "refused", reason="graph", detail="the directory cannot be reached right now")


class LinkRefused(ValueError):
    """`sponsor_link` cannot make a link: the message says why, in the operator's terms."""


@dataclass(frozen=True, slots=True)
class SponsorLink:
    url: str
    guest_id: str
    sponsor: str
    episode: str
    expires: datetime


async def sponsor_link(deps: AttestDeps, guest_id: str, sponsor: str) -> SponsorLink:
    """The link a sponsor (object id) or fallback reviewer (mail address) would get for the guest's current
    review: what the warning mail carries, for an admin who needs to resend it (`guestwarden attest link`)."""
    memory = await _memory(deps, guest_id)
    if memory is None or memory.stage not in (Stage.WARNED, Stage.DISABLED) or not memory.episode_id:
        stage = f"its stage is {memory.stage}" if memory else "guestwarden has not warned it"
        raise LinkRefused(f"guest {guest_id} is not in a review a sponsor could answer ({stage})")
    if "@" in sponsor:
        if sponsor.lower() not in {m.lower() for m in deps.config.fallback_reviewers}:
            raise LinkRefused(f"{sponsor} is not in STALE_FALLBACK_REVIEWERS; a sponsor is named by its object id")
        key = reviewer(sponsor)
    else:
        sponsors = (await deps.graph.sponsors_of([guest_id])).get(guest_id, [])
        if not any(c.id == sponsor for c in sponsors):
            known = ", ".join(sorted(c.id for c in sponsors)) or "none"
            raise LinkRefused(f"{sponsor} is not a sponsor of guest {guest_id} (its sponsors: {known})")
        key = sponsor
    now = deps.clock()
    url = deps.config.link(guest_id, key, memory.episode_id, now)
    return SponsorLink(url, guest_id, key, memory.episode_id, now + timedelta(days=deps.config.link_days))


def _page(deps: AttestDeps, status: int, view: str, **context: Any) -> AttestReply:
    return AttestReply(status, deps.templates.page({"view": view, **context}))


def _token(raw: str, deps: AttestDeps) -> AttestToken:
    try:
        return verify(raw, deps.config.keys, deps.clock())
    except TokenError as exc:
        raise _Refused(410 if exc.reason == "expired" else 403, exc.reason, str(exc), exc.token) from None


async def _memory(deps: AttestDeps, guest_id: str) -> StageMemory | None:
    record = await deps.state.get(RECORD_KIND, guest_id)
    return StageMemory.from_json(record.value) if record else None


def _guest_view(user: DirectoryUser | None, guest_id: str) -> dict[str, str]:
    if user is None:
        return {"name": guest_id, "address": ""}
    return {
        "name": user.display_name or user.user_principal_name or guest_id,
        "address": user.mail or user.user_principal_name or "",
    }


async def _show(raw: str, deps: AttestDeps) -> AttestReply:
    token = _token(raw, deps)
    now = deps.clock()
    memory = await _memory(deps, token.guest_id)
    preview = judge(memory, token.episode, Choice.KEEP, now, deps.config.keep_days)
    guest = _guest_view(await deps.graph.get_user(token.guest_id), token.guest_id)
    if preview.status in ("over", "decided"):
        return _page(deps, 410 if preview.status == "over" else 409, preview.status, guest=guest, detail=preview.detail)
    return _page(
        deps,
        200,
        "confirm",
        guest=guest,
        token=raw,
        confirm=confirm_code(deps.config.keys[0], raw, now),
        keep_days=deps.config.keep_days,
        keep_until=f"{now + timedelta(days=deps.config.keep_days):%Y-%m-%d}",
        disabled=memory is not None and memory.stage is Stage.DISABLED,
        dry_run=deps.config.dry_run,
        expires=f"{token.expires:%Y-%m-%d}",
    )


def _same_origin(request: AttestRequest, base_url: str) -> bool:
    """A browser's POST says where it comes from; a cross-site one is refused (defence in depth: the
    anti-forgery code is what makes a forged POST fail)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    expected = urlsplit(base_url)
    actual = urlsplit(origin)
    return (actual.scheme, actual.netloc.lower()) == (expected.scheme, expected.netloc.lower())


async def _answer(raw: str, request: AttestRequest, deps: AttestDeps) -> AttestReply:
    token = _token(raw, deps)
    now = deps.clock()
    if not _same_origin(request, deps.config.base_url):
        raise _Refused(403, "cross-site", "the answer did not come from guestwarden's own page", token)
    if not confirm_ok(request.form.get("confirm", ""), raw, deps.config.keys, now):
        raise _Refused(
            403, "no-confirmation", "the confirmation page expired or was not used: open the link again", token
        )
    try:
        choice = Choice(request.form.get("choice", ""))
    except ValueError:
        raise _Refused(400, "bad-choice", "choose keep or remove", token) from None
    sponsor_mail = await _sponsor_mail(token, deps)
    claim = await deps.state.claim(ACTION, token.guest_id, token.episode, owner=deps.owner, lease_seconds=LEASE_SECONDS)
    if claim.done:
        outcome = claim.outcome or {}
        detail = f"{outcome.get('choice', 'answered')} by {outcome.get('sponsorMail') or outcome.get('sponsor')}"
        raise _Refused(409, "replayed", f"this review was already answered ({detail}); nothing changed", token)
    if claim.held:
        raise _Refused(409, "in-progress", "another answer for this guest is being recorded right now", token)
    completed = False
    try:
        reply, completed = await _decide(token, choice, sponsor_mail, claim, deps)
        return reply
    finally:
        if not completed:  # refused, a dry run, the cap, a Graph failure: the episode is still open
            await deps.state.release(claim)


async def _sponsor_mail(token: AttestToken, deps: AttestDeps) -> str:
    """The sponsor's mail, if it is still a sponsor of the guest (or a fallback reviewer); else refused."""
    if token.sponsor_is_reviewer:
        if token.reviewer_mail in {m.lower() for m in deps.config.fallback_reviewers}:
            return token.reviewer_mail
        raise _Refused(403, "not-a-sponsor", "you are no longer a reviewer of guests (STALE_FALLBACK_REVIEWERS)", token)
    sponsors = (await deps.graph.sponsors_of([token.guest_id])).get(token.guest_id, [])
    match = next((c for c in sponsors if c.id == token.sponsor), None)
    if match is None:
        raise _Refused(403, "not-a-sponsor", "you are no longer a sponsor of this guest", token)
    return match.mail or match.user_principal_name or token.sponsor


async def _decide(
    token: AttestToken, choice: Choice, sponsor_mail: str, claim: Claim, deps: AttestDeps
) -> tuple[AttestReply, bool]:
    """The answer's page, and whether it was recorded (the claim completed: the episode's answer is given)."""
    now = deps.clock()
    memory = await _memory(deps, token.guest_id)
    verdict = judge(memory, token.episode, choice, now, deps.config.keep_days)
    user = await deps.graph.get_user(token.guest_id)
    guest = _guest_view(user, token.guest_id)
    if verdict.status in ("over", "decided"):
        raise _Refused(410 if verdict.status == "over" else 409, verdict.status, verdict.detail, token)
    evidence: dict[str, Any] = {
        "sponsor": token.sponsor,
        "sponsorMail": sponsor_mail,
        "choice": str(choice),
        "episode": token.episode,
        "stage": str(memory.stage) if memory else None,
    }
    auditor = Auditor(deps.state, _actor(token), deps.clock)
    if verdict.status == "remove":
        if deps.config.dry_run:
            await auditor.record(
                ACTION, token.guest_id, outcome="would-remove", reason=str(choice), evidence=evidence, dry_run=True
            )
            return _page(deps, 200, "dry-run", guest=guest), False
        if not await _count_removal(deps, now):
            await auditor.record(ACTION, token.guest_id, outcome="capped", reason=str(choice), evidence=evidence)
            return _page(deps, 429, "capped", guest=guest, cap=deps.config.max_removals_per_day), False
        assert memory is not None
        we_disabled = user is not None and user.account_enabled is not False
        reclaim = reclaim_of(user, deps.config.reclaim) if user is not None else Reclaim()
        core = [BatchOps.disable(token.guest_id), BatchOps.revoke_sessions(token.guest_id)]
        results = await _graph(deps, core, reclaim_requests(token.guest_id, reclaim))
        reclaimed, failed = reclaimed_from(token.guest_id, reclaim, results)
        if reclaimed or failed:
            evidence.update(reclaimed=reclaimed.to_json(), reclaimFailed=failed)
        disabled = StageMemory(
            Stage.DISABLED,
            now,
            we_disabled=we_disabled,
            run_id=memory.run_id,
            episode=token.episode,
            reclaimed=reclaimed or None,
        )
        verdict = Judgement("remove", memory=disabled)
    elif verdict.enable:
        await _graph(deps, [BatchOps.enable(token.guest_id)])
    outcome = {"choice": str(choice), "sponsor": token.sponsor, "sponsorMail": sponsor_mail, "result": verdict.status}
    await _settle(deps, claim, token.guest_id, verdict, memory, evidence, outcome, auditor)
    log.info("attestation: %s for guest %s (%s)", verdict.status, token.guest_id, verdict.detail or choice)
    return _page(deps, 200, verdict.status, guest=guest, detail=verdict.detail, enabled=verdict.enable), True


async def _settle(
    deps: AttestDeps,
    claim: Claim,
    guest_id: str,
    verdict: Judgement,
    memory: StageMemory | None,
    evidence: dict[str, Any],
    outcome: dict[str, Any],
    auditor: Auditor,
) -> None:
    """Record an episode's answer: the claim completed with its audit entry, the guest's new stage, and the
    licences of a guest enabled again given back."""
    if verdict.memory is not None:
        evidence["until"] = verdict.memory.until.isoformat() if verdict.memory.until else None
    entry = auditor.entry(
        ACTION,
        guest_id,
        outcome=verdict.status,
        reason=str(evidence["choice"]),
        evidence={**evidence, "reEnabled": verdict.enable},
        correlation_id=claim.scope,
    )
    await deps.state.complete(claim, outcome, audit=entry)
    if verdict.memory is not None:
        await write_stage(deps.state, guest_id, verdict.memory)
    if verdict.enable and memory is not None:
        await give_back(
            deps.graph,
            deps.state,
            deps.clock,
            guest_id,
            memory.reclaimed,
            deps.config.alerting,
            actor=auditor.actor,
            correlation_id=claim.scope,
        )


async def operator_keep(deps: AttestDeps, guest_id: str, actor: str) -> Judgement:
    """An operator keeps a guest under review, with a sponsor's "keep" rule (judge) and record: KEPT for
    STALE_ATTEST_KEEP_DAYS, enabled again if guestwarden had disabled it, and the episode's answer given (a
    sponsor's later link gets "already answered"). `actor` is the audit log's actor (the operator)."""
    memory = await _memory(deps, guest_id)
    episode = memory.episode_id if memory else ""
    verdict = judge(memory, episode, Choice.KEEP, deps.clock(), deps.config.keep_days)
    if verdict.status != "keep":
        return verdict
    claim = await deps.state.claim(ACTION, guest_id, episode, owner=deps.owner, lease_seconds=LEASE_SECONDS)
    if not claim.won:
        return Judgement("decided", "this review was already answered" if claim.done else "an answer is in progress")
    completed = False
    try:
        if verdict.enable:
            await _graph(deps, [BatchOps.enable(guest_id)])
        evidence: dict[str, Any] = {
            "operator": actor,
            "choice": str(Choice.KEEP),
            "episode": episode,
            "stage": str(memory.stage) if memory else None,
        }
        outcome = {"choice": str(Choice.KEEP), "operator": actor, "result": verdict.status}
        await _settle(deps, claim, guest_id, verdict, memory, evidence, outcome, Auditor(deps.state, actor, deps.clock))
        completed = True
    except _Refused as refused:
        return Judgement("failed", refused.detail)
    finally:
        if not completed:
            await deps.state.release(claim)
    log.info("attestation: kept by %s for guest %s (%s)", actor, guest_id, verdict.detail)
    return verdict


async def _graph(
    deps: AttestDeps, requests: list[BatchRequest], optional: list[BatchRequest] | None = None
) -> dict[str, BatchResult]:
    """Run `requests` (all must succeed, or the answer is refused with 502) and `optional` (their results are
    the caller's to judge) in one `$batch`."""
    try:
        results = {r.id: r for r in await deps.graph.batch([*requests, *(optional or [])])}
    except GraphError as exc:
        raise _Refused(502, "graph", f"Microsoft Graph did not accept the change ({exc}); try again later") from None
    failed = next((results[r.id] for r in requests if not results[r.id].ok), None)
    if failed is not None:
        raise _Refused(502, "graph", f"Microsoft Graph refused the change ({failed.status}); try again later")
    return results


async def _count_removal(deps: AttestDeps, now: datetime) -> bool:
    """Take one of today's removals (STALE_ATTEST_MAX_REMOVALS_PER_DAY); False when none is left."""
    key = f"{now:%Y-%m-%d}"
    for _ in range(20):
        record = await deps.state.get(REMOVALS_KIND, key)
        used = int(str(record.value.get("count", 0))) if record else 0
        if used >= deps.config.max_removals_per_day:
            return False
        try:
            await deps.state.put(REMOVALS_KIND, key, {"count": used + 1}, etag=record.etag if record else None)
            return True
        except ConflictError:
            continue  # another answer took one at the same moment: read again
    return False


def _actor(token: AttestToken) -> str:
    """Who answered, as the audit log's actor: `sponsor:<object id>` or `reviewer:<mail>` (the token's sponsor,
    which its signature proves; the sponsor's mail is in the entry's evidence)."""
    return token.sponsor if token.sponsor_is_reviewer else f"sponsor:{token.sponsor}"


async def _audit_refused(deps: AttestDeps, raw: str, refused: _Refused) -> None:
    token = refused.token
    actor = _actor(token) if token else REFUSED_ACTOR
    await Auditor(deps.state, actor, deps.clock).record(
        ACTION,
        token.guest_id if token else "unknown",
        outcome="refused",
        reason=refused.reason,
        evidence={"status": refused.status, "detail": refused.detail, "token": token_digest(raw) if raw else None},
        correlation_id=token.episode if token else "",
    )
    log.warning("attestation refused (%s, %d): %s", refused.reason, refused.status, refused.detail)
