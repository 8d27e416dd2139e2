"""Routes of the pages (outside /api/; no token needed)."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.pages import responses as r


def routes() -> list[Route]:
    return [
        Route("/", r.home, methods=["GET"]),
        Route("/jobs/{job_id:int}", r.job, methods=["GET"]),
        Route("/jobs/{job_id:int}/runs/{run_id:int}", r.run, methods=["GET"]),
    ]
