"""HTTP trigger: the operator dashboard (docs/dashboard.md), server-rendered pages under /api/dashboard/.

Anonymous at the Functions level: in Azure, App Service Authentication (Entra ID) stands in front of the app and
passes the signed-in operator in X-MS-CLIENT-PRINCIPAL; the service checks its app roles (GuestWarden.Reader,
GuestWarden.Operator). GET pages change nothing; actions are POSTs from a confirm page. The rules are in
shared.services.dashboard.
"""

import azure.functions as func

from functions.forms import posted_form
from shared.bootstrap import AppServices, dashboard_deps
from shared.services.dashboard import MAX_FORM_BYTES, ROUTE, DashboardRequest, handle_dashboard

bp = func.Blueprint()


@bp.route(route=ROUTE + "/{*path}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    services = AppServices.current()
    deps = dashboard_deps(services.settings, services.graph, services.state, services.clock)
    if deps is None:
        return func.HttpResponse("the dashboard is off (DASHBOARD_SIGNING_KEY)", status_code=404, mimetype="text/plain")
    request = DashboardRequest(
        req.method,
        req.route_params.get("path") or "",
        dict(req.params),
        posted_form(req, MAX_FORM_BYTES),
        dict(req.headers),
    )
    reply = await handle_dashboard(request, deps)
    headers = {**reply.headers, "Content-Type": reply.content_type}
    return func.HttpResponse(reply.body, status_code=reply.status, headers=headers)
