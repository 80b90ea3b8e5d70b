"""The one mapping between ``azure.functions`` HTTP objects and the edge (``shared.edge``)."""

from __future__ import annotations

import azure.functions as func

from shared.edge import Headers, Inbound, Reply, Route, respond

# Every method is routed to each function so that the wrong one gets a 405 problem, not the host's bare 404.
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def inbound(req: func.HttpRequest) -> Inbound:
    """The host's request as the edge reads it."""
    return Inbound(
        method=req.method.upper(),
        url=req.url,
        headers=Headers(req.headers.items()),
        params=dict(req.params),
        route=dict(req.route_params),
        body=req.get_body(),
    )


def outbound(reply: Reply) -> func.HttpResponse:
    """The edge's reply as the host's response."""
    return func.HttpResponse(reply.body, status_code=reply.status, headers=reply.headers, mimetype=reply.mimetype)


async def serve(route: Route, req: func.HttpRequest) -> func.HttpResponse:
    """Answer ``req`` by ``route``."""
    return outbound(await respond(route, inbound(req)))
