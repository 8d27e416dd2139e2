"""Routes of the workspace-objects area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.workspace_files import responses as r

BASE = "/api/2.0/workspace"


def routes() -> list[Route]:
    return [
        Route(f"{BASE}/import", endpoint(r.import_), methods=["POST"]),
        Route(f"{BASE}/export", endpoint(r.export), methods=["GET"]),
        Route(f"{BASE}/get-status", endpoint(r.get_status), methods=["GET"]),
        Route(f"{BASE}/list", endpoint(r.list_objects), methods=["GET"]),
        Route(f"{BASE}/mkdirs", endpoint(r.mkdirs), methods=["POST"]),
        Route(f"{BASE}/delete", endpoint(r.delete), methods=["POST"]),
    ]
