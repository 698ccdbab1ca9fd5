"""The risk flows' adapters that outlive one message: templates, the partner directory and its sinks' HTTP client.

Built once per AppServices (per event loop) by shared.bootstrap from the settings alone (the partner directory was
read and validated, its secrets resolved, when the settings loaded), so a broken template fails the first
invocation loudly (and every one after it, into the dead-letter queue) instead of mailing guests half a notice.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from shared.adapters.graph import GraphGateway
from shared.adapters.templates import RiskTemplates
from shared.adapters.tickets import PartnerSinks, sink_http_client
from shared.settings import Settings


@dataclass
class RiskWiring:
    templates: RiskTemplates
    sinks: PartnerSinks | None
    http: httpx.AsyncClient | None

    @classmethod
    def build(cls, settings: Settings, graph: GraphGateway) -> RiskWiring:
        templates = RiskTemplates(settings.risk.template_dir)
        if settings.risk.partner_directory is None:
            return cls(templates, None, None)
        directory = settings.risk.partners
        assert directory is not None, "load_settings reads RISK_PARTNER_DIRECTORY when Feature.RISK is asked for"
        http = sink_http_client(settings.risk.ticket_timeout_seconds)
        sender = settings.mail.sender or ""
        sinks = PartnerSinks(directory, http, sender, graph.send_mail, templates.ticket_text)
        return cls(templates, sinks, http)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()
