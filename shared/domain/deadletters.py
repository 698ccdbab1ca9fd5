"""Dead-lettered queue messages as an operator sees them, and the per-queue summary the overview reads.

A message lands in `<queue>/$DeadLetterQueue` after `maxDeliveryCount` failed attempts (reason
`MaxDeliveryCountExceeded`) or when a processor dead-letters it on purpose. The body is attacker-influenced (it can
quote a guest's display name): it is shown as escaped text and never logged. Pure: no I/O, no SDK.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PEEK_CAP = 1000
"""Dead letters counted per queue by the refresh: more than this shows as "1000+"."""
RESUBMIT_CAP = 1000
"""Dead letters the dashboard's resubmit sends back at once (the rest stay for the next resubmit)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    sequence_number: int
    message_id: str | None
    enqueued: datetime | None
    reason: str | None
    description: str | None
    delivery_count: int
    body: str
    """A preview of the body (its first characters), as text."""

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "sequenceNumber": self.sequence_number,
            "messageId": self.message_id,
            "enqueued": self.enqueued.isoformat() if self.enqueued else None,
            "reason": self.reason,
            "description": self.description,
            "deliveryCount": self.delivery_count,
            "body": self.body,
        }


NO_REASON = "(no reason)"


def summarise(letters: Sequence[DeadLetter], cap: int = PEEK_CAP) -> dict[str, Any]:
    """One queue's line in the dead-letter record: how many (at most `cap`: `capped` when there are more), the
    oldest enqueue time, and how many per dead-letter reason. Counts only: no body, no description."""
    counted = list(letters[:cap])
    enqueued = [d.enqueued for d in counted if d.enqueued is not None]
    reasons = Counter(d.reason or NO_REASON for d in counted)
    return {
        "count": len(counted),
        "capped": len(letters) > cap,
        "oldest": min(enqueued).isoformat() if enqueued else None,
        "reasons": dict(reasons.most_common()),
    }


def shown_count(count: int, capped: bool) -> str:
    """A queue's count as the pages show it: "1000+" when the refresh stopped counting."""
    return f"{count}+" if capped else str(count)
