"""Sponsor attestation: the signed link a warning mail carries, and what a sponsor's answer may change.

A warned guest's sponsors (or, for a guest without one, the fallback reviewers) each get a personal link: "keep
this guest for N more days" or "remove now". The link is the only credential (a sponsor may be anyone in the
tenant, and no sign-in is asked of them), so it is an HMAC-SHA256-signed token naming the guest, the sponsor,
the lifecycle episode and an expiry. Nothing in it is secret; everything in it is authenticated.

- `sign` / `verify`: the token. `kid` names the key (a short hash of it) so keys can be rotated: the current key
  signs, the previous ones still verify until their links have expired (docs/stale-guests.md, "Rotating the
  attestation key"). Verification is constant time (`hmac.compare_digest`) and checks the signature before it
  reads anything else, so a forged token learns nothing from the answer.
- `confirm_code` / `confirm_ok`: the anti-forgery field of the confirmation page. A GET only shows the page
  (mail scanners such as Safe Links open every link); the POST must carry the code the page was rendered with,
  bound to the token and to when the page was shown.
- `judge`: what an answer may do to the guest's stage memory (shared.domain.stale), once per episode.

Pure: hmac, hashlib, json and base64 from the standard library; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain.stale import Stage, StageMemory

__all__ = [
    "CONFIRM_SECONDS",
    "MAX_TOKEN_LENGTH",
    "AttestToken",
    "Choice",
    "Judgement",
    "TokenError",
    "confirm_code",
    "confirm_ok",
    "judge",
    "key_id",
    "reviewer",
    "sign",
    "token_digest",
    "verify",
]

VERSION = "v1"
MAX_TOKEN_LENGTH = 1024
"""A token is about 250 characters; anything much longer is refused before it is parsed."""
CONFIRM_SECONDS = 3600
"""How long a confirmation page's anti-forgery code stays valid."""
MIN_KEY_LENGTH = 32


class TokenError(Exception):
    """Why a token was refused: `forged` (bad signature, unknown key, malformed), `expired`."""

    def __init__(self, reason: str, detail: str, token: AttestToken | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.token = token
        """An expired token's content (its signature was valid); None for a forged one."""


class Choice(enum.StrEnum):
    KEEP = "keep"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class AttestToken:
    guest_id: str
    sponsor: str
    """The sponsor's directory object id, or `reviewer:<mail>` for a fallback reviewer (see `reviewer`)."""
    episode: str
    """The lifecycle episode (StageMemory.episode_id): an answer counts once per episode, and a link from an
    earlier episode changes nothing."""
    expires: datetime

    @property
    def sponsor_is_reviewer(self) -> bool:
        return self.sponsor.startswith("reviewer:")

    @property
    def reviewer_mail(self) -> str:
        return self.sponsor.removeprefix("reviewer:")


def reviewer(mail: str) -> str:
    """The sponsor field of a fallback reviewer's token (reviewers are configured by mail address)."""
    return f"reviewer:{mail.lower()}"


def key_id(key: str) -> str:
    """A short public name of a key (not reversible): which key signed a token."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def token_digest(token: str) -> str:
    """What the audit log keeps of a refused token: never the token itself."""
    return hashlib.sha256(token.encode(errors="replace")).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, message: str) -> bytes:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()


def sign(token: AttestToken, key: str) -> str:
    """`v1.<payload>.<signature>`, URL-safe (base64url, no padding)."""
    payload = json.dumps(
        {
            "g": token.guest_id,
            "s": token.sponsor,
            "e": token.episode,
            "x": int(token.expires.timestamp()),
            "k": key_id(key),
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    body = f"{VERSION}.{_b64(payload.encode())}"
    return f"{body}.{_b64(_mac(key, body))}"


def verify(text: str, keys: Sequence[str], now: datetime) -> AttestToken:
    """The token's content if one of `keys` signed it and it has not expired; TokenError otherwise."""
    if not text or len(text) > MAX_TOKEN_LENGTH or text.count(".") != 2:
        raise TokenError("forged", "the link is not a guestwarden attestation link")
    version, payload_text, signature_text = text.split(".")
    body = f"{version}.{payload_text}"
    try:
        signature = _unb64(signature_text)
        payload = json.loads(_unb64(payload_text))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError("forged", "the link is damaged") from None
    if version != VERSION or not isinstance(payload, dict):
        raise TokenError("forged", "the link is not a guestwarden attestation link")
    key = next((k for k in keys if k and hmac.compare_digest(key_id(k), str(payload.get("k", "")))), None)
    # The same work whether or not a key was found: compare against a MAC either way.
    expected = _mac(key or "\x00" * MIN_KEY_LENGTH, body)
    if not hmac.compare_digest(expected, signature) or key is None:
        raise TokenError("forged", "the link's signature is not valid (changed, or not made by guestwarden)")
    try:
        token = AttestToken(
            guest_id=str(payload["g"]),
            sponsor=str(payload["s"]),
            episode=str(payload["e"]),
            expires=datetime.fromtimestamp(int(payload["x"]), UTC),
        )
    except (KeyError, TypeError, ValueError):
        raise TokenError("forged", "the link is damaged") from None
    if now >= token.expires:
        raise TokenError("expired", f"the link expired on {token.expires:%Y-%m-%d %H:%M} UTC", token)
    return token


def confirm_code(key: str, token: str, shown: datetime) -> str:
    """The confirmation page's anti-forgery field: `<unix time shown>.<mac over the token and that time>`."""
    stamp = str(int(shown.timestamp()))
    return f"{stamp}.{_b64(_mac(key, f'confirm.{stamp}.{token}'))}"


def confirm_ok(code: str, token: str, keys: Sequence[str], now: datetime) -> bool:
    """Whether `code` came from a confirmation page for this token, shown within CONFIRM_SECONDS."""
    stamp, _, mac = code.partition(".")
    if not stamp.isdigit() or len(code) > 128:
        return False
    shown = datetime.fromtimestamp(int(stamp), UTC)
    if not timedelta(seconds=-60) <= now - shown <= timedelta(seconds=CONFIRM_SECONDS):
        return False
    matches = [hmac.compare_digest(confirm_code(k, token, shown), f"{stamp}.{mac}") for k in keys if k]
    return any(matches)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What an answer does. `status`: keep | remove | already-disabled | decided | over."""

    status: str
    detail: str = ""
    memory: StageMemory | None = None
    """The stage memory to write (keep: KEPT until the new date)."""
    enable: bool = False
    """keep of a guest we disabled: enable the account again."""


def judge(memory: StageMemory | None, episode: str, choice: Choice, now: datetime, keep_days: int) -> Judgement:
    """What a sponsor's `choice` may do to a guest whose stage memory is `memory`, for a link of `episode`."""
    if memory is not None and memory.stage is Stage.DELETED:
        return Judgement("over", f"the guest was deleted on {memory.since:%Y-%m-%d}; an administrator can restore it")
    if memory is None or memory.episode_id != episode:
        return Judgement("over", "the guest is no longer in the review this link was sent for")
    if memory.stage is Stage.KEPT:
        return Judgement("decided", f"kept until {memory.until:%Y-%m-%d}" if memory.until else "kept")
    if memory.stage not in (Stage.WARNED, Stage.DISABLED):
        return Judgement("over", "the guest is no longer in the review this link was sent for")
    if choice is Choice.REMOVE:
        if memory.stage is Stage.DISABLED:
            return Judgement("already-disabled", f"already disabled on {memory.since:%Y-%m-%d}")
        return Judgement("remove")
    until = now + timedelta(days=keep_days)
    kept = StageMemory(Stage.KEPT, now, run_id=memory.run_id, episode=episode, until=until)
    enable = memory.stage is Stage.DISABLED and memory.we_disabled
    return Judgement("keep", f"kept until {until:%Y-%m-%d}", kept, enable=enable)
