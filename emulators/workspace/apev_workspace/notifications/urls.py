"""Routes of the notification destinations area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.notifications import responses as r

BASE = "/api/2.0/notification-destinations"


def routes() -> list[Route]:
    return [
        Route(BASE, endpoint(r.create), methods=["POST"]),
        Route(BASE, endpoint(r.list_destinations), methods=["GET"]),
        Route(BASE + "/{id}", endpoint(r.get), methods=["GET"]),
        Route(BASE + "/{id}", endpoint(r.update), methods=["PATCH"]),
        Route(BASE + "/{id}", endpoint(r.delete), methods=["DELETE"]),
        Route("/__admin/notifications", r.admin_switch, methods=["GET", "POST"]),
    ]
