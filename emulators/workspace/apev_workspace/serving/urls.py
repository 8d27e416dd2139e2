"""Routes of Model Serving: the control plane under `/api/2.0/serving-endpoints`, queries without `/api`."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.serving import responses as r

BASE = "/api/2.0/serving-endpoints"


def routes() -> list[Route]:
    return [
        Route(BASE, endpoint(r.create), methods=["POST"]),
        Route(BASE, endpoint(r.list_endpoints), methods=["GET"]),
        Route(f"{BASE}/{{name}}", endpoint(r.get), methods=["GET"]),
        Route(f"{BASE}/{{name}}", endpoint(r.delete), methods=["DELETE"]),
        Route(f"{BASE}/{{name}}/config", endpoint(r.update_config), methods=["PUT"]),
        Route(f"{BASE}/{{name}}/tags", endpoint(r.patch_tags), methods=["PATCH"]),
        Route(f"{BASE}/{{name}}/metrics", endpoint(r.metrics), methods=["GET"]),
        Route(f"{BASE}/{{name}}/served-models/{{served_model_name}}/logs", endpoint(r.logs), methods=["GET"]),
        Route(
            f"{BASE}/{{name}}/served-models/{{served_model_name}}/build-logs", endpoint(r.build_logs), methods=["GET"]
        ),
        Route("/serving-endpoints/{name}/invocations", endpoint(r.invoke), methods=["POST"]),
    ]
