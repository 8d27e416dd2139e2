"""Routes of the permissions area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.permissions import responses as r

BASE = "/api/2.0/permissions/{object_type}/{object_id}"


def routes() -> list[Route]:
    return [
        Route(BASE, endpoint(r.get_permissions), methods=["GET"]),
        Route(BASE, endpoint(r.set_permissions), methods=["PUT"]),
        Route(BASE, endpoint(r.update_permissions), methods=["PATCH"]),
        Route(f"{BASE}/permissionLevels", endpoint(r.get_levels), methods=["GET"]),
    ]
