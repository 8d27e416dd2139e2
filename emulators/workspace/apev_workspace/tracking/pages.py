"""The MLflow pages: an experiment (its runs) and a run (params, metrics, tags), server-rendered like the job
run pages. `#mlflow/experiments/<id>/runs/<run>` (Databricks' run link) reaches them through the home page's
redirect script. Like the other pages they need no token: they are for a person on this machine."""

from __future__ import annotations

import copy
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from apev_workspace.pages.render import badge, duration, facts, page, table, when
from apev_workspace.tracking.models import latest, now_ms

if TYPE_CHECKING:
    from apev_workspace.server import Workspace

RUNS_SHOWN = 100


def _not_found(what: str) -> HTMLResponse:
    body = f"<h1>Not found</h1><p>{escape(what)} does not exist in this workspace.</p><p><a href='/'>Home</a></p>"
    return HTMLResponse(page("Not found", body), status_code=404)


def _status(run: dict[str, Any]) -> str:
    return badge(str(run["status"]))


def _latest(run: dict[str, Any]) -> dict[str, float]:
    return {k: latest(v)["value"] for k, v in run["metrics"].items() if v}


def _crumbs(experiment: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    link = f'<a href="/mlflow/experiments/{escape(experiment["experiment_id"])}">{escape(experiment["name"])}</a>'
    tail = f" &rsaquo; run {escape(run['run_name'])}" if run else ""
    return f'<nav class="crumbs"><a href="/">Workspace</a> &rsaquo; experiment {link}{tail}</nav>'


def experiment_page(experiment: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    now = now_ms()
    keys = sorted({k for r in runs for k in r["metrics"]})
    rows = []
    for r in runs:
        values = _latest(r)
        href = f"/mlflow/experiments/{escape(r['experiment_id'])}/runs/{escape(r['run_id'])}"
        rows.append(
            [
                f'<a href="{href}">{escape(r["run_name"])}</a>',
                _status(r),
                when(r["start_time"]),
                duration(r, now),
                *(f"{values[k]:g}" if k in values else "-" for k in keys),
            ]
        )
    body = [
        _crumbs(experiment),
        f"<h1>{escape(experiment['name'])}</h1>",
        facts(
            [
                ("Experiment id", escape(experiment["experiment_id"])),
                ("Owner", escape(experiment["owner"])),
                ("Created", when(experiment["creation_time"])),
                ("Lifecycle", escape(experiment["lifecycle_stage"])),
            ]
        ),
        f"<h2>Runs (newest {RUNS_SHOWN})</h2>",
        table(["Run", "Status", "Started", "Duration", *keys], rows, "runs")
        if rows
        else '<p class="muted">No runs yet.</p>',
    ]
    return page(f"Experiment {experiment['name']}", "".join(body))


def run_page(experiment: dict[str, Any], run: dict[str, Any]) -> str:
    now = now_ms()
    metrics = [
        [escape(k), f"{latest(v)['value']:g}", str(latest(v)["step"]), str(len(v))]
        for k, v in sorted(run["metrics"].items())
    ]
    body = [
        _crumbs(experiment, run),
        f"<h1>{escape(run['run_name'])}</h1>",
        facts(
            [
                ("Run id", f"<code>{escape(run['run_id'])}</code>"),
                ("Status", _status(run)),
                ("User", escape(run["user_id"])),
                ("Started", when(run["start_time"])),
                ("Duration", duration(run, now)),
                ("Artifact location", escape(run["artifact_uri"])),
            ]
        ),
        "<h2>Parameters</h2>",
        table(["Name", "Value"], [[escape(k), escape(v)] for k, v in sorted(run["params"].items())], "params")
        if run["params"]
        else '<p class="muted">No parameters.</p>',
        "<h2>Metrics</h2>",
        table(["Name", "Latest", "Step", "Values logged"], metrics, "metrics")
        if metrics
        else '<p class="muted">No metrics.</p>',
        "<h2>Tags</h2>",
        table(["Name", "Value"], [[escape(k), escape(v)] for k, v in sorted(run["tags"].items())], "tags"),
    ]
    return page(f"Run {run['run_name']}", "".join(body), refresh=run["status"] == "RUNNING")


def _experiment(ws: Workspace, experiment_id: str) -> Response:
    with ws.lock:
        experiment = ws.tracking.experiments.get(experiment_id)
        if experiment is None:
            return _not_found(f"Experiment {experiment_id}")
        runs = sorted(
            (r for r in ws.tracking.runs.values() if r["experiment_id"] == experiment_id),
            key=lambda r: (r["start_time"], r["run_id"]),
            reverse=True,
        )[:RUNS_SHOWN]
        experiment, runs = copy.deepcopy(experiment), copy.deepcopy(runs)
    return HTMLResponse(experiment_page(experiment, runs))


def _run(ws: Workspace, experiment_id: str, run_id: str) -> Response:
    with ws.lock:
        experiment = ws.tracking.experiments.get(experiment_id)
        run = ws.tracking.runs.get(run_id)
        if experiment is None or run is None or run["experiment_id"] != experiment_id:
            return _not_found(f"Run {run_id} of experiment {experiment_id}")
        experiment, run = copy.deepcopy(experiment), copy.deepcopy(run)
    return HTMLResponse(run_page(experiment, run))


async def experiment(request: Request) -> Response:
    return await run_in_threadpool(_experiment, request.app.state.workspace, request.path_params["experiment_id"])


async def run(request: Request) -> Response:
    p = request.path_params
    return await run_in_threadpool(_run, request.app.state.workspace, p["experiment_id"], p["run_id"])
