"""Routes of the Jobs API, served under both 2.2 and 2.1."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.jobs import responses as r

TABLE = [
    ("jobs/create", "POST", r.create),
    ("jobs/get", "GET", r.get),
    ("jobs/list", "GET", r.list_jobs),
    ("jobs/reset", "POST", r.reset),
    ("jobs/update", "POST", r.update),
    ("jobs/delete", "POST", r.delete),
    ("jobs/run-now", "POST", r.run_now),
    ("jobs/runs/submit", "POST", r.submit),
    ("jobs/runs/get", "GET", r.get_run),
    ("jobs/runs/list", "GET", r.list_runs),
    ("jobs/runs/cancel", "POST", r.cancel),
    ("jobs/runs/cancel-all", "POST", r.cancel_all),
    ("jobs/runs/delete", "POST", r.delete_run),
    ("jobs/runs/repair", "POST", r.repair),
    ("jobs/runs/get-output", "GET", r.get_output),
]


def routes() -> list[Route]:
    return [
        Route(f"/api/{version}/{path}", endpoint(fn), methods=[method])
        for version in ("2.2", "2.1")
        for path, method, fn in TABLE
    ]
