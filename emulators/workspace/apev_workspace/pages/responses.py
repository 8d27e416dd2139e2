"""The pages: run (the target of `run_page_url`), task output, job, and the workspace home.

`run_page_url` has Databricks' shape, `<host>/?o=<workspace id>#job/<job>/run/<run>`; the fragment never
reaches a server, so the home page carries a three-line inline script that sends the browser on to
`/jobs/<job>/runs/<run>`, and lists jobs and recent runs for a browser without JavaScript. The pages need no
token (they are for a person on the local machine, like the workspace itself); keep the workspace on
127.0.0.1 when that matters.
"""

from __future__ import annotations

import copy
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from apev_workspace.jobs import states
from apev_workspace.jobs.execution import tail
from apev_workspace.jobs.models import now_ms
from apev_workspace.pages.render import (
    badge,
    dag_svg,
    duration,
    facts,
    page,
    state_of,
    table,
    when,
)

if TYPE_CHECKING:
    from apev_workspace.server import Workspace

RECENT = 25
LOG_SHOWN = 1024 * 1024
REDIRECT = (
    "<script>(function(){var h=location.hash,m=h.match(/^#job\\/(\\d+)(?:\\/run\\/(\\d+))?/);"
    "if(m){location.replace(m[2]?'/jobs/'+m[1]+'/runs/'+m[2]:'/jobs/'+m[1]);return;}"
    "m=h.match(/^#mlflow\\/experiments\\/(\\d+)(?:\\/runs\\/([0-9a-f]+))?/);"
    "if(m){location.replace('/mlflow/experiments/'+m[1]+(m[2]?'/runs/'+m[2]:''));}})();</script>"
)


def _not_found(what: str) -> HTMLResponse:
    body = f"<h1>Not found</h1><p>{escape(what)} does not exist in this workspace.</p><p><a href='/'>Home</a></p>"
    return HTMLResponse(page("Not found", body), status_code=404)


def _run_link(run: dict[str, Any], task_run_id: int | None = None) -> str:
    return f"/jobs/{run.get('job_id') or run['run_id']}/runs/{task_run_id or run['run_id']}"


def _job_link(run: dict[str, Any]) -> str:
    if run.get("job_id") is None:
        return escape(run.get("run_name") or "one-time run")
    return f'<a href="/jobs/{run["job_id"]}">{escape(run.get("run_name") or str(run["job_id"]))}</a>'


def _runs_table(runs: list[dict[str, Any]], now: int) -> str:
    rows = [
        [
            f'<a href="{_run_link(r)}">{r["run_id"]}</a>',
            _job_link(r),
            badge(state_of(r)),
            escape(r.get("trigger", "")),
            when(r["start_time"]),
            duration(r, now),
        ]
        for r in runs
    ]
    if not rows:
        return '<p class="muted">No runs yet.</p>'
    return table(["Run", "Job", "State", "Trigger", "Started", "Duration"], rows, "runs")


# ---------------------------------------------------------------------- run page
def run_page(ws: Workspace, run: dict[str, Any]) -> str:
    now = now_ms()
    tasks = run["tasks"]
    term = run.get("term") or {}
    rows = [
        ("Job", _job_link(run)),
        ("Run id", str(run["run_id"])),
        ("State", badge(state_of(run)) + f' <span class="muted">{escape(run["life"])}</span>'),
        ("Trigger", escape(run.get("trigger", ""))),
        ("Run as", escape(run["run_as"]["name"])),
        ("Launched by", escape(run.get("creator_user_name") or "")),
        ("Started", when(run["start_time"])),
        ("Ended", when(run.get("end_time"))),
        ("Duration", duration(run, now)),
    ]
    if term:
        rows.append(("Termination", escape(f"{term.get('code')} ({term.get('type')})")))
    params = run.get("params") or {}
    if params:
        rows.append(("Job parameters", escape(", ".join(f"{k}={v}" for k, v in params.items()))))
    message = run.get("message") or ""
    body = [
        f'<nav class="crumbs"><a href="/">Workspace</a> &rsaquo; {_job_link(run)} &rsaquo; run {run["run_id"]}</nav>',
        f"<h1>{escape(run.get('run_name') or 'Run')} · run {run['run_id']}</h1>",
        facts(rows),
    ]
    if message:
        body.append(f'<h2>Termination message</h2><div class="message" id="termination">{escape(message)}</div>')
    body.append("<h2>Task graph</h2>")
    body.append(dag_svg(tasks, lambda t: _run_link(run, t["run_id"]), now))
    body.append("<h2>Tasks</h2>")
    body.append(table(["Task", "State", "Started", "Duration", "Attempts", "Message", "Output"], _task_rows(run, now)))
    if run.get("repair_history"):
        history = [
            [escape(h["type"]), str(h.get("id", "")), when(h["start_time"]), when(h.get("end_time"))]
            for h in run["repair_history"]
        ]
        body.append("<h2>Repair history</h2>" + table(["Type", "Repair id", "Started", "Ended"], history))
    return page(f"Run {run['run_id']} · {run.get('run_name') or ''}", "".join(body), refresh=states.is_active(run))


def _task_rows(run: dict[str, Any], now: int) -> list[list[str]]:
    rows = []
    for task in run["tasks"]:
        retries = len(task.get("previous_attempts") or [])
        link = _run_link(run, task["run_id"])
        rows.append(
            [
                f'<span class="task-name">{escape(task["task_key"])}</span>',
                badge(state_of(task)),
                when(task.get("start_time")),
                duration(task, now) if task.get("start_time") else "-",
                f"{task['attempt_number'] + 1} ({retries} {'retry' if retries == 1 else 'retries'})",
                escape(task.get("message") or ""),
                f'<a href="{link}">output</a>',
            ]
        )
    return rows


# ---------------------------------------------------------------------- task output page
def task_page(ws: Workspace, run: dict[str, Any], task: dict[str, Any]) -> str:
    now = now_ms()
    workdir = ws.executor.runs_dir / str(task["run_id"])
    stdout, stderr = tail(workdir / "stdout", LOG_SHOWN), tail(workdir / "stderr", LOG_SHOWN)
    rows = [
        ("Run", f'<a href="{_run_link(run)}">{run["run_id"]}</a> ({_job_link(run)})'),
        ("Task run id", str(task["run_id"])),
        ("State", badge(state_of(task))),
        ("Attempt", str(task["attempt_number"] + 1)),
        ("Started", when(task.get("start_time"))),
        ("Ended", when(task.get("end_time"))),
        ("Duration", duration(task, now) if task.get("start_time") else "-"),
    ]
    body = [
        f'<nav class="crumbs"><a href="/">Workspace</a> &rsaquo; {_job_link(run)} &rsaquo; '
        f'<a href="{_run_link(run)}">run {run["run_id"]}</a> &rsaquo; {escape(task["task_key"])}</nav>',
        f"<h1>{escape(task['task_key'])} · task run {task['run_id']}</h1>",
        facts(rows),
    ]
    if task.get("message"):
        body.append(f'<h2>Message</h2><div class="message">{escape(task["message"])}</div>')
    if task.get("error"):
        body.append(f'<h2>Error</h2><div class="message" id="error">{escape(task["error"])}</div>')
    if task.get("error_trace"):
        body.append(f"<h2>Error trace</h2><pre>{escape(task['error_trace'])}</pre>")
    if (task.get("notebook_output") or {}).get("result") is not None:
        body.append(f"<h2>Notebook result</h2><pre>{escape(task['notebook_output']['result'])}</pre>")
    body.append(f'<h2>Standard output</h2><pre id="stdout">{escape(stdout) or "(empty)"}</pre>')
    if stderr:
        body.append(f'<h2>Standard error</h2><pre id="stderr">{escape(stderr)}</pre>')
    earlier = [a for a in task.get("previous_attempts") or [] if a["task_key"] == task["task_key"]]
    if earlier:
        links = ", ".join(
            f'<a href="{_run_link(run, a["run_id"])}">attempt {a["attempt_number"] + 1}</a>' for a in earlier
        )
        body.append(f"<h2>Earlier attempts</h2><p>{links}</p>")
    return page(f"{task['task_key']} · run {run['run_id']}", "".join(body), refresh=states.is_active(task))


# ---------------------------------------------------------------------- job and home pages
def job_page(ws: Workspace, job: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    settings = job["settings"]
    schedule = settings.get("schedule")
    rows = [
        ("Job id", str(job["job_id"])),
        ("Created by", escape(job["creator_user_name"])),
        ("Run as", escape(job["run_as"]["name"])),
        ("Created", when(job["created_time"])),
        ("Tasks", escape(", ".join(t["task_key"] for t in settings.get("tasks") or []) or "-")),
    ]
    if schedule:
        upcoming = ws.schedules.next_fire(job["job_id"])
        rows.append(
            (
                "Schedule",
                escape(f"{schedule['quartz_cron_expression']} ({schedule['timezone_id']}, {schedule['pause_status']})")
                + (f' <span class="muted">next: {upcoming:%Y-%m-%d %H:%M:%S} UTC</span>' if upcoming else ""),
            )
        )
    body = [
        '<nav class="crumbs"><a href="/">Workspace</a> &rsaquo; job</nav>',
        f"<h1>{escape(settings.get('name') or '')}</h1>",
        facts(rows),
        f"<h2>Recent runs (newest {RECENT})</h2>",
        _runs_table(runs, now_ms()),
    ]
    return page(f"Job {settings.get('name') or job['job_id']}", "".join(body))


def home_page(ws: Workspace, jobs: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    job_rows = [
        [f'<a href="/jobs/{j["job_id"]}">{escape(j["settings"].get("name") or "")}</a>', str(j["job_id"])] for j in jobs
    ]
    body = [
        "<h1>Jobs</h1>",
        table(["Name", "Job id"], job_rows) if job_rows else '<p class="muted">No jobs yet.</p>',
        f"<h2>Recent runs (newest {RECENT})</h2>",
        _runs_table(runs, now_ms()),
    ]
    return page("Local Databricks workspace", "".join(body), head=REDIRECT)


# ---------------------------------------------------------------------- handlers
def _newest(runs: Any) -> list[dict[str, Any]]:
    ordered = sorted(runs, key=lambda r: (r["start_time"], r["run_id"]), reverse=True)[:RECENT]
    return copy.deepcopy(ordered)


def _home(ws: Workspace) -> Response:
    with ws.lock:
        jobs = sorted(ws.jobs.jobs.values(), key=lambda j: j["job_id"], reverse=True)[:100]
        return HTMLResponse(home_page(ws, copy.deepcopy(jobs), _newest(ws.jobs.runs.values())))


def _job(ws: Workspace, job_id: int) -> Response:
    with ws.lock:
        job = ws.jobs.jobs.get(job_id)
        if job is None:
            return _not_found(f"Job {job_id}")
        runs = _newest(r for r in ws.jobs.runs.values() if r.get("job_id") == job_id)
        return HTMLResponse(job_page(ws, copy.deepcopy(job), runs))


def _run(ws: Workspace, run_id: int) -> Response:
    with ws.lock:
        run = ws.jobs.runs.get(run_id)
        if run is not None:
            return HTMLResponse(run_page(ws, copy.deepcopy(run)))
        found = ws.jobs.find_task_run(run_id)
        if found is None:
            return _not_found(f"Run {run_id}")
        parent, task = copy.deepcopy(found)
    return HTMLResponse(task_page(ws, parent, task))


async def home(request: Request) -> Response:
    return await run_in_threadpool(_home, request.app.state.workspace)


async def job(request: Request) -> Response:
    return await run_in_threadpool(_job, request.app.state.workspace, request.path_params["job_id"])


async def run(request: Request) -> Response:
    return await run_in_threadpool(_run, request.app.state.workspace, request.path_params["run_id"])
