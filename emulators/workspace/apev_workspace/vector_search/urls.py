"""Routes of Vector Search: endpoints and indexes under `/api/2.0/vector-search`."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.vector_search import responses as r

BASE = "/api/2.0/vector-search"


def routes() -> list[Route]:
    return [
        Route(f"{BASE}/endpoints", endpoint(r.create_endpoint), methods=["POST"]),
        Route(f"{BASE}/endpoints", endpoint(r.list_endpoints), methods=["GET"]),
        Route(f"{BASE}/endpoints/{{name}}", endpoint(r.get_endpoint), methods=["GET"]),
        Route(f"{BASE}/endpoints/{{name}}", endpoint(r.delete_endpoint), methods=["DELETE"]),
        Route(f"{BASE}/indexes", endpoint(r.create_index), methods=["POST"]),
        Route(f"{BASE}/indexes", endpoint(r.list_indexes), methods=["GET"]),
        Route(f"{BASE}/indexes/{{name}}", endpoint(r.get_index), methods=["GET"]),
        Route(f"{BASE}/indexes/{{name}}", endpoint(r.delete_index), methods=["DELETE"]),
        Route(f"{BASE}/indexes/{{name}}/sync", endpoint(r.sync_index), methods=["POST"]),
        Route(f"{BASE}/indexes/{{name}}/query", endpoint(r.query_index), methods=["POST"]),
        Route(f"{BASE}/indexes/{{name}}/upsert-data", endpoint(r.upsert_data), methods=["POST"]),
        Route(f"{BASE}/indexes/{{name}}/delete-data", endpoint(r.delete_data), methods=["DELETE"]),
    ]
