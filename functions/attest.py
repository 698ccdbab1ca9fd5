"""HTTP trigger: a sponsor's answer to a stale-guest warning, through the signed link in the mail.

Route: GET/POST /api/attest?t=<token>, anonymous: the HMAC-signed token is the credential (the sponsor is not
asked to sign in; shared.domain.attestation). GET shows a confirmation page and changes nothing (mail scanners
open every link); the POST from that page acts. The rules are in shared.services.attestation.
"""

import azure.functions as func

from functions.forms import posted_form
from shared.bootstrap import AppServices
from shared.services.attestation import ROUTE, AttestRequest, handle_attestation

bp = func.Blueprint()

MAX_FORM_BYTES = 8192
"""The page's form is a token, a code and a choice: anything larger is not from it."""


@bp.route(route=ROUTE, methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def attest(req: func.HttpRequest) -> func.HttpResponse:
    deps = AppServices.current().attestation()
    if deps is None:
        return func.HttpResponse("attestation links are off", status_code=404, mimetype="text/plain")
    reply = await handle_attestation(
        AttestRequest(req.method, dict(req.params), posted_form(req, MAX_FORM_BYTES), dict(req.headers)), deps
    )
    return func.HttpResponse(
        reply.html, status_code=reply.status, headers=dict(reply.headers), mimetype="text/html", charset="utf-8"
    )
