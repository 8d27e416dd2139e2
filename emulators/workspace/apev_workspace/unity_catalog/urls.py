"""Routes of the Unity Catalog area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.unity_catalog import responses as r

BASE = "/api/2.1/unity-catalog"


def routes() -> list[Route]:
    return [
        Route(f"{BASE}/catalogs", endpoint(r.create_catalog), methods=["POST"]),
        Route(f"{BASE}/catalogs", endpoint(r.list_catalogs), methods=["GET"]),
        Route(f"{BASE}/catalogs/{{name}}", endpoint(r.get_catalog), methods=["GET"]),
        Route(f"{BASE}/catalogs/{{name}}", endpoint(r.update_catalog), methods=["PATCH"]),
        Route(f"{BASE}/catalogs/{{name}}", endpoint(r.delete_catalog), methods=["DELETE"]),
        Route(f"{BASE}/schemas", endpoint(r.create_schema), methods=["POST"]),
        Route(f"{BASE}/schemas", endpoint(r.list_schemas), methods=["GET"]),
        Route(f"{BASE}/schemas/{{full_name}}", endpoint(r.get_schema), methods=["GET"]),
        Route(f"{BASE}/schemas/{{full_name}}", endpoint(r.update_schema), methods=["PATCH"]),
        Route(f"{BASE}/schemas/{{full_name}}", endpoint(r.delete_schema), methods=["DELETE"]),
        Route(f"{BASE}/volumes", endpoint(r.create_volume), methods=["POST"]),
        Route(f"{BASE}/volumes", endpoint(r.list_volumes), methods=["GET"]),
        Route(f"{BASE}/volumes/{{name}}", endpoint(r.get_volume), methods=["GET"]),
        Route(f"{BASE}/volumes/{{name}}", endpoint(r.update_volume), methods=["PATCH"]),
        Route(f"{BASE}/volumes/{{name}}", endpoint(r.delete_volume), methods=["DELETE"]),
        Route(f"{BASE}/tables", endpoint(r.list_tables), methods=["GET"]),
        Route(f"{BASE}/tables/{{full_name}}/exists", endpoint(r.table_exists), methods=["GET"]),
        Route(f"{BASE}/tables/{{full_name}}", endpoint(r.get_table), methods=["GET"]),
        Route(f"{BASE}/tables/{{full_name}}", endpoint(r.delete_table), methods=["DELETE"]),
        Route(f"{BASE}/permissions/{{securable_type}}/{{full_name}}", endpoint(r.get_permissions), methods=["GET"]),
        Route(
            f"{BASE}/permissions/{{securable_type}}/{{full_name}}", endpoint(r.update_permissions), methods=["PATCH"]
        ),
        Route(
            f"{BASE}/effective-permissions/{{securable_type}}/{{full_name}}",
            endpoint(r.effective_permissions),
            methods=["GET"],
        ),
    ]
