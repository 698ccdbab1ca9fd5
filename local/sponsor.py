"""A sponsor at a browser, for the demo and the e2e tests: find the attestation link in a mail the simulator
sent, open it (GET), and press a button on the page it shows (the POST, with the page's own form fields).

Only what a browser does with a plain HTML form: follow the link, read the hidden fields, post them back with
the Origin header a browser adds. Nothing here knows how tokens are made.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

_LINK = re.compile(r'href="([^"]*/api/attest\?[^"]*)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    html: str
    headers: dict[str, str]

    def hidden_fields(self) -> dict[str, str]:
        return {name: html.unescape(value) for name, value in _HIDDEN.findall(self.html)}


def attestation_links(mail: dict[str, Any]) -> list[str]:
    """The attestation links in one mail of the simulator's outbox."""
    body = str(((mail.get("message") or {}).get("body") or {}).get("content") or "")
    return [html.unescape(link) for link in _LINK.findall(body)]


def recipients(mail: dict[str, Any]) -> list[str]:
    return [r["emailAddress"]["address"] for r in (mail.get("message") or {}).get("toRecipients", [])]


async def open_link(url: str) -> Page:
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as response:
        return Page(response.status, await response.text(), dict(response.headers))


async def press(url: str, page: Page, choice: str, *, origin: str | None = None) -> Page:
    """Submit the page's form with the button `choice` (keep | remove), as a browser would."""
    parts = urlsplit(url)
    headers = {"Origin": origin or f"{parts.scheme}://{parts.netloc}"}
    form = {**page.hidden_fields(), "choice": choice}
    async with aiohttp.ClientSession() as session, session.post(url, data=form, headers=headers) as response:
        return Page(response.status, await response.text(), dict(response.headers))
