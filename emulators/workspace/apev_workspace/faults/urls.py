"""Routes of the fault admin endpoint."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.faults import responses as r
from apev_workspace.faults.responses import ADMIN_PREFIX


def routes() -> list[Route]:
    return [
        Route(f"{ADMIN_PREFIX}/faults", r.add_fault, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/faults", r.list_faults, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/faults", r.clear_faults, methods=["DELETE"]),
        Route(f"{ADMIN_PREFIX}/faults/{{rule_id:int}}", r.clear_faults, methods=["DELETE"]),
        Route(f"{ADMIN_PREFIX}/counters", r.get_counters, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/counters", r.reset_counters, methods=["DELETE"]),
    ]
