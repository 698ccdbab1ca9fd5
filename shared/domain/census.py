"""The dashboard's aggregates: what guestwarden counts as it works, so that the overview reads a handful of records
instead of every guest or every stage record (docs/dashboard.md, "Where the numbers come from"). Pure: no I/O.

- `StageTally`: guests per lifecycle stage, each counted under the day its next step falls due. Every writer of a
  stage record moves the guest in the tally (shared.services.census.write_stage); the sweep rebuilds it from the
  records at the end of each run, so a writer that died between the two writes is corrected by the next night.
- `Census`: what the sweep saw of the tenant at its last run (guests by invitation state and home domain), the
  last runs, and the actions done per night and per home domain over CHART_DAYS.
- `Seats`: the licences bought and used per SKU, as the posture checks (or the licence reclaim) last read them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from shared.domain.directory import SubscribedSku
from shared.domain.stale import RESTORE_WINDOW, Stage, StageMemory, StalePolicy

CHART_DAYS = 90
"""How many nights the chart of actions keeps."""
CHART_DOMAINS = 8
"""Home domains the chart shows one by one; the rest are summed as OTHER_DOMAIN."""
DOMAINS_SHOWN = 12
"""Home domains the census lists by guest count; the rest are summed as OTHER_DOMAIN."""
OTHER_DOMAIN = "(other domains)"
ACTIONS_CHARTED = ("warn", "disable", "delete")


def next_step(memory: StageMemory, policy: StalePolicy) -> tuple[str, datetime | None]:
    """What guestwarden does next to a guest in this stage, and from when (None: nothing planned)."""
    if memory.stage is Stage.WARNED:
        return "disable", memory.since + timedelta(days=policy.warn_grace_days)
    if memory.stage is Stage.DISABLED:
        return "delete", memory.since + timedelta(days=policy.delete_grace_days)
    if memory.stage is Stage.KEPT:
        return "review again", memory.until
    if memory.stage is Stage.DELETED:
        return "restorable until", memory.since + RESTORE_WINDOW
    return "nothing (active again)", None


DUE_STEPS: Mapping[Stage, str] = {Stage.WARNED: "disable", Stage.DISABLED: "delete", Stage.KEPT: "review again"}
"""The stages whose next step is an action guestwarden takes (or a review it asks for)."""


def _day_of(memory: StageMemory) -> str:
    """The day a stage record is counted under: its `until` for KEPT (when it is reviewed again), else `since`."""
    when = memory.until if memory.stage is Stage.KEPT and memory.until is not None else memory.since
    return f"{when:%Y-%m-%d}"


@dataclass(slots=True)
class StageTally:
    """Guests per stage, per day (the stage's `since`, or a kept guest's `until`)."""

    days: dict[str, Counter[str]] = field(default_factory=dict)
    """stage -> day (YYYY-MM-DD) -> guests."""

    @classmethod
    def of(cls, memories: Iterable[StageMemory]) -> StageTally:
        tally = cls()
        for memory in memories:
            tally.move(None, memory)
        return tally

    def move(self, before: StageMemory | None, after: StageMemory | None) -> bool:
        """Move one guest from its old record to its new one (None: no record); whether anything changed."""
        old = (str(before.stage), _day_of(before)) if before else None
        new = (str(after.stage), _day_of(after)) if after else None
        if old == new:
            return False
        if old is not None:
            counts = self.days.setdefault(old[0], Counter())
            counts[old[1]] -= 1
            if counts[old[1]] <= 0:
                del counts[old[1]]
        if new is not None:
            self.days.setdefault(new[0], Counter())[new[1]] += 1
        return True

    def counts(self) -> dict[str, int]:
        """Guests per stage, every stage listed."""
        return {str(stage): sum(self.days.get(str(stage), Counter()).values()) for stage in Stage}

    def due(self, today: date, within_days: int, policy: StalePolicy) -> dict[str, int]:
        """Next steps falling due on or before `today + within_days` (overdue ones included), per step."""
        last = today + timedelta(days=within_days)
        grace = {Stage.WARNED: policy.warn_grace_days, Stage.DISABLED: policy.delete_grace_days, Stage.KEPT: 0}
        due: dict[str, int] = {}
        for stage, step in DUE_STEPS.items():
            for day, n in self.days.get(str(stage), Counter()).items():
                if date.fromisoformat(day) + timedelta(days=grace[stage]) <= last:
                    due[step] = due.get(step, 0) + n
        return due

    def to_json(self) -> dict[str, Any]:
        return {stage: dict(sorted(days.items())) for stage, days in sorted(self.days.items()) if days}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StageTally:
        return cls({str(s): Counter({str(d): int(n) for d, n in days.items()}) for s, days in value.items()})


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the overview shows of a sweep run."""

    run_id: str
    started: datetime
    dry_run: bool
    status: str
    message: str = ""
    outcomes: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "started": self.started.isoformat(),
            "dryRun": self.dry_run,
            "status": self.status,
            "message": self.message,
            "outcomes": dict(self.outcomes),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RunSummary:
        return cls(
            str(value["runId"]),
            datetime.fromisoformat(str(value["started"])),
            bool(value.get("dryRun", True)),
            str(value.get("status", "")),
            str(value.get("message", "")),
            {str(k): int(v) for k, v in (value.get("outcomes") or {}).items()},
        )


@dataclass(slots=True)
class Census:
    """The tenant as the sweep last read it, and what guestwarden did per night."""

    as_of: datetime | None = None
    """When the last complete reading of the guests started (None: no run has read them all yet)."""
    guests: int = 0
    invitation: dict[str, int] = field(default_factory=dict)
    """Guests per invitation state: accepted, pending, self-service sign-up, unknown."""
    domains: dict[str, int] = field(default_factory=dict)
    """Guests per home domain (the DOMAINS_SHOWN largest, the rest under OTHER_DOMAIN)."""
    last_run: RunSummary | None = None
    last_dry_run: RunSummary | None = None
    nights: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Night (YYYY-MM-DD) -> {"warn"|"disable"|"delete": done, "domains": {domain: done}}: real runs only."""

    def saw(self, started: datetime, guests: int, invitation: Mapping[str, int], per_domain: Mapping[str, int]) -> None:
        """A run read every guest: its counts replace the last ones."""
        self.as_of, self.guests = started, guests
        self.invitation = {k: int(v) for k, v in sorted(invitation.items()) if v}
        self.domains = top(per_domain, DOMAINS_SHOWN)

    def ran(self, summary: RunSummary) -> None:
        if summary.dry_run:
            self.last_dry_run = summary
        else:
            self.last_run = summary

    def acted(self, night: date, done: Mapping[str, int], per_domain: Mapping[str, int], today: date) -> None:
        """A real run's done actions (per action, and per home domain) are added to its night; nights older than
        CHART_DAYS before `today` are dropped."""
        key = f"{night:%Y-%m-%d}"
        entry = self.nights.setdefault(key, {})
        for action in ACTIONS_CHARTED:
            entry[action] = int(entry.get(action, 0)) + int(done.get(action, 0))
        domains: Counter[str] = Counter({str(d): int(n) for d, n in (entry.get("domains") or {}).items()})
        domains.update({d: int(n) for d, n in per_domain.items() if n})
        entry["domains"] = top(domains, CHART_DOMAINS)
        first = today - timedelta(days=CHART_DAYS - 1)
        self.nights = {k: v for k, v in sorted(self.nights.items()) if date.fromisoformat(k) >= first}

    def chart(self, today: date) -> dict[str, Any]:
        """The chart's series over the last CHART_DAYS nights: per action, and per home domain (all actions)."""
        days = [today - timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS)]
        labels = [f"{d:%Y-%m-%d}" for d in days]
        nights = [self.nights.get(label, {}) for label in labels]
        actions = {a: [int(n.get(a, 0)) for n in nights] for a in ACTIONS_CHARTED}
        totals: Counter[str] = Counter()
        for night in nights:
            totals.update(night.get("domains") or {})
        shown = [d for d, _ in totals.most_common(CHART_DOMAINS)]
        domains = {d: [int((n.get("domains") or {}).get(d, 0)) for n in nights] for d in shown}
        return {"days": days, "labels": labels, "actions": actions, "domains": domains}

    def to_json(self) -> dict[str, Any]:
        return {
            "asOf": self.as_of.isoformat() if self.as_of else None,
            "guests": self.guests,
            "invitation": self.invitation,
            "domains": self.domains,
            "lastRun": self.last_run.to_json() if self.last_run else None,
            "lastDryRun": self.last_dry_run.to_json() if self.last_dry_run else None,
            "nights": self.nights,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Census:
        as_of = value.get("asOf")
        last, dry = value.get("lastRun"), value.get("lastDryRun")
        return cls(
            datetime.fromisoformat(str(as_of)) if as_of else None,
            int(value.get("guests", 0)),
            {str(k): int(v) for k, v in (value.get("invitation") or {}).items()},
            {str(k): int(v) for k, v in (value.get("domains") or {}).items()},
            RunSummary.from_json(last) if isinstance(last, dict) else None,
            RunSummary.from_json(dry) if isinstance(dry, dict) else None,
            {str(k): dict(v) for k, v in (value.get("nights") or {}).items() if isinstance(v, dict)},
        )


def top(counts: Mapping[str, int], shown: int) -> dict[str, int]:
    """The `shown` largest counts by name, the rest summed under OTHER_DOMAIN (largest first, then by name)."""
    ordered = sorted(((str(k), int(v)) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ordered[:shown])
    rest = sum(v for _, v in ordered[shown:])
    if rest:
        kept[OTHER_DOMAIN] = kept.get(OTHER_DOMAIN, 0) + rest
    return kept


def invitation_state(external_user_state: str | None, self_service: bool) -> str:
    """A guest's invitation state as the overview groups it."""
    if external_user_state == "Accepted":
        return "accepted"
    if external_user_state == "PendingAcceptance":
        return "pending"
    if self_service:
        return "self-service sign-up"
    return "unknown"


@dataclass(frozen=True, slots=True)
class Seat:
    sku_id: str
    name: str
    enabled: int
    consumed: int
    status: str

    @property
    def free(self) -> int:
        return max(self.enabled - self.consumed, 0)


@dataclass(frozen=True, slots=True)
class Seats:
    """Licences per SKU, as last read from `subscribedSkus`."""

    as_of: datetime
    skus: tuple[Seat, ...]

    @classmethod
    def of(cls, as_of: datetime, skus: Iterable[SubscribedSku]) -> Seats:
        seats = (
            Seat(s.sku_id, s.sku_part_number, s.enabled_units, s.consumed_units, s.capability_status)
            for s in skus
            if s.applies_to in (None, "User")
        )
        return cls(as_of, tuple(sorted(seats, key=lambda s: s.name)))

    def to_json(self) -> dict[str, Any]:
        return {
            "asOf": self.as_of.isoformat(),
            "skus": [
                {"skuId": s.sku_id, "name": s.name, "enabled": s.enabled, "consumed": s.consumed, "status": s.status}
                for s in self.skus
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Seats:
        return cls(
            datetime.fromisoformat(str(value["asOf"])),
            tuple(
                Seat(str(s["skuId"]), str(s["name"]), int(s["enabled"]), int(s["consumed"]), str(s.get("status", "")))
                for s in value.get("skus") or ()
            ),
        )
