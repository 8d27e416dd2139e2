"""Routes of the secrets area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.secrets import responses as r

BASE = "/api/2.0/secrets"


def routes() -> list[Route]:
    return [
        Route(f"{BASE}/scopes/create", endpoint(r.create_scope), methods=["POST"]),
        Route(f"{BASE}/scopes/list", endpoint(r.list_scopes), methods=["GET"]),
        Route(f"{BASE}/scopes/delete", endpoint(r.delete_scope), methods=["POST"]),
        Route(f"{BASE}/put", endpoint(r.put), methods=["POST"]),
        Route(f"{BASE}/delete", endpoint(r.delete), methods=["POST"]),
        Route(f"{BASE}/list", endpoint(r.list_secrets), methods=["GET"]),
        Route(f"{BASE}/get", endpoint(r.get), methods=["GET"]),
        Route(f"{BASE}/acls/put", endpoint(r.put_acl), methods=["POST"]),
        Route(f"{BASE}/acls/delete", endpoint(r.delete_acl), methods=["POST"]),
        Route(f"{BASE}/acls/list", endpoint(r.list_acls), methods=["GET"]),
        Route(f"{BASE}/acls/get", endpoint(r.get_acl), methods=["GET"]),
    ]
