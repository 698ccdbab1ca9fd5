"""HTTP trigger: Graph's change-notification webhook (validation handshake, notifications, lifecycle events).

Route: POST /api/graph/notifications?code=<function key>. The function key is part of the notificationUrl
given to Graph (GRAPH_NOTIFICATION_URL); requests without it never reach this code.
"""

import azure.functions as func

from shared.bootstrap import AppServices
from shared.services.webhook import WebhookRequest, handle_graph_webhook

bp = func.Blueprint()


@bp.route(route="graph/notifications", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    services = AppServices.current()
    reply = await handle_graph_webhook(
        WebhookRequest(req.method, dict(req.params), dict(req.headers), req.get_body()), services.webhook()
    )
    return func.HttpResponse(reply.body, status_code=reply.status, mimetype=reply.mimetype, charset="utf-8")
