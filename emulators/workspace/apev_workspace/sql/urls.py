"""Routes of the SQL area."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.sql import responses as r

WAREHOUSES = "/api/2.0/sql/warehouses"
STATEMENTS = "/api/2.0/sql/statements"


def routes() -> list[Route]:
    return [
        Route(WAREHOUSES, endpoint(r.list_warehouses), methods=["GET"]),
        Route(WAREHOUSES, endpoint(r.create_warehouse), methods=["POST"]),
        Route(f"{WAREHOUSES}/{{id}}", endpoint(r.get_warehouse), methods=["GET"]),
        Route(f"{WAREHOUSES}/{{id}}", endpoint(r.delete_warehouse), methods=["DELETE"]),
        Route(f"{WAREHOUSES}/{{id}}/edit", endpoint(r.edit_warehouse), methods=["POST"]),
        Route(f"{WAREHOUSES}/{{id}}/start", endpoint(r.start_warehouse), methods=["POST"]),
        Route(f"{WAREHOUSES}/{{id}}/stop", endpoint(r.stop_warehouse), methods=["POST"]),
        Route(STATEMENTS, endpoint(r.execute_statement), methods=["POST"]),
        Route(f"{STATEMENTS}/{{statement_id}}", endpoint(r.get_statement), methods=["GET"]),
        Route(f"{STATEMENTS}/{{statement_id}}/cancel", endpoint(r.cancel_statement), methods=["POST"]),
        Route(
            f"{STATEMENTS}/{{statement_id}}/result/chunks/{{chunk_index:int}}",
            endpoint(r.get_chunk),
            methods=["GET"],
        ),
    ]
