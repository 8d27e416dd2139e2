"""Routes of the billing admin endpoint (the tables themselves are read through SQL as `system.billing.*`)."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.billing import responses as r

PREFIX = "/__admin/billing"


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/corrections", r.correct, methods=["POST"]),
        Route(f"{PREFIX}/{{table}}", r.tables, methods=["GET"]),
    ]
