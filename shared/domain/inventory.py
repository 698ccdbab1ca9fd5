"""What an admin sees per guest in the inventory: state, licence, last activity, sponsors. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shared.domain.directory import DirectoryContact, DirectoryUser


@dataclass(frozen=True, slots=True)
class GuestRow:
    id: str
    display_name: str
    sign_in_name: str
    state: str
    enabled: bool | None
    licenses: tuple[str, ...]
    usage_location: str | None
    last_activity: datetime | None
    sponsors: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["licenses"] = list(self.licenses)
        data["sponsors"] = list(self.sponsors)
        data["last_activity"] = self.last_activity.isoformat() if self.last_activity else None
        return data


def invitation_state(user: DirectoryUser) -> str:
    """PendingAcceptance / Accepted as Graph says; guests without one (self-service sign-up) say so."""
    return user.external_user_state or "n/a"


def guest_row(
    user: DirectoryUser,
    sku_names: Mapping[str, str],
    sponsors: Sequence[DirectoryContact] = (),
) -> GuestRow:
    return GuestRow(
        id=user.id,
        display_name=user.display_name or "",
        sign_in_name=user.mail or user.user_principal_name or "",
        state=invitation_state(user),
        enabled=user.account_enabled,
        licenses=tuple(sorted(sku_names.get(sku, sku) for sku in user.assigned_sku_ids)),
        usage_location=user.usage_location,
        last_activity=user.sign_in_activity.latest if user.sign_in_activity else None,
        sponsors=tuple(s.display_name or s.mail or s.id for s in sponsors),
    )
