"""The risk flows' adapters that outlive one message: templates, the partner directory and its sinks' HTTP client.

Built once per AppServices (per event loop) by shared.bootstrap, so a broken template or partner directory
fails the first invocation loudly (and every one after it, into the dead-letter queue) instead of mailing
guests half a notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from shared.adapters.graph import GraphGateway
from shared.adapters.templates import RiskTemplates
from shared.adapters.tickets import PartnerSinks, load_partner_directory, sink_http_client
from shared.settings import Settings


@dataclass
class RiskWiring:
    templates: RiskTemplates
    sinks: PartnerSinks | None
    http: httpx.AsyncClient | None

    @classmethod
    def build(cls, settings: Settings, graph: GraphGateway, env: Mapping[str, str]) -> RiskWiring:
        templates = RiskTemplates(settings.risk_template_dir)
        if settings.risk_partner_directory is None:
            return cls(templates, None, None)
        directory = load_partner_directory(settings.risk_partner_directory, env)
        http = sink_http_client(settings.risk_ticket_timeout_seconds)
        sender = settings.mail_sender or ""
        sinks = PartnerSinks(directory, http, sender, graph.send_mail, templates.ticket_text)
        return cls(templates, sinks, http)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
