"""Jobs API endpoints in the wire shape of Jobs API 2.2 (2.1 answers the same)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from apev_workspace.core.exceptions import InvalidParameterValue, require
from apev_workspace.core.http import Call
from apev_workspace.jobs import states
from apev_workspace.jobs.exceptions import RunNotFound
from apev_workspace.jobs.models import Jobs, now_ms

ARRAY_PAGE = 100


# ---------------------------------------------------------------------- paging
def _encode(cursor: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")


def _decode(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise InvalidParameterValue(f"Invalid page_token {token!r}") from None


def _limit(call: Call, default: int, maximum: int) -> int:
    limit = call.int_arg("limit", default)
    assert limit is not None
    if limit == 0:
        return maximum
    if not 0 < limit <= maximum:
        raise InvalidParameterValue(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def _page_arrays(call: Call, holder: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Arrays in jobs/get and runs/get come 100 at a time, all paged together by `page_token`.

    The SDK's `jobs.get`/`jobs.get_run` extend every one of these arrays with each next page, so a page after
    the first carries only the next slice of each (empty once exhausted), never a repeat.
    """
    token = call.query.get("page_token")
    offset = int(_decode(token)["o"]) if token else 0
    more = False
    for name in names:
        items = holder.get(name)
        if isinstance(items, list):
            holder[name] = items[offset : offset + ARRAY_PAGE]
            more |= offset + ARRAY_PAGE < len(items)
    extra: dict[str, Any] = {}
    if more:
        extra = {"has_more": True, "next_page_token": _encode({"o": offset + ARRAY_PAGE})}
    if offset:
        extra["prev_page_token"] = _encode({"o": max(0, offset - ARRAY_PAGE)})
    return extra


# ---------------------------------------------------------------------- rendering
def render_job(jobs: Jobs, job: dict[str, Any], *, with_tasks: bool = True) -> dict[str, Any]:
    settings = copy.deepcopy(job["settings"])
    if not with_tasks:
        settings.pop("tasks", None)
        settings.pop("job_clusters", None)
    return {
        "job_id": job["job_id"],
        "creator_user_name": job["creator_user_name"],
        "run_as_user_name": job["run_as"]["name"],
        "created_time": job["created_time"],
        "settings": settings,
    }


def _durations(obj: dict[str, Any], started_key: str) -> dict[str, int]:
    now = now_ms()
    started = obj.get(started_key) or 0
    ended = obj.get("end_time") or 0
    out = {"setup_duration": 0, "cleanup_duration": 0, "execution_duration": 0}
    if started and ended:
        out["execution_duration"] = max(0, ended - started)
    if ended and obj.get("start_time"):
        out["run_duration"] = max(0, ended - obj["start_time"])
    if "created" not in obj and obj.get("start_time"):
        out["queue_duration"] = max(0, (started or ended or now) - obj["start_time"])
    return out


def render_task(jobs: Jobs, run: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = copy.deepcopy(task["spec"])
    out.update(
        {
            "task_key": task["task_key"],
            "run_id": task["run_id"],
            "attempt_number": task["attempt_number"],
            "state": states.legacy_state(task),
            "status": states.status(task),
            "start_time": task["start_time"],
            "end_time": task["end_time"],
            "run_page_url": jobs.run_page_url(run, task["run_id"]),
            "run_if": task["spec"].get("run_if", "ALL_SUCCESS"),
        }
    )
    out.update(_durations(task, "start_time"))
    return out


def _repair_item(run: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    snap = item.get("snapshot") or {
        "life": run["life"],
        "result": run.get("result"),
        "message": run.get("message", ""),
        "term": run.get("term"),
    }
    out = {
        "type": item["type"],
        "start_time": item["start_time"],
        "end_time": item["end_time"],
        "task_run_ids": item["task_run_ids"],
        "state": states.legacy_state(snap),
        "status": states.status(snap),
    }
    if item["type"] == "REPAIR":
        out["id"] = item["id"]
    return out


def render_run(jobs: Jobs, run: dict[str, Any], *, tasks: list[dict[str, Any]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_id": run["run_id"],
        "number_in_job": run["number_in_job"],
        "original_attempt_run_id": run["run_id"],
        "attempt_number": 0,
        "run_name": run["run_name"],
        "run_type": run["run_type"],
        "trigger": run["trigger"],
        "format": "MULTI_TASK",
        "creator_user_name": run["creator_user_name"],
        "run_as_user_name": run["run_as"]["name"],
        "start_time": run["start_time"],
        "end_time": run["end_time"],
        "state": states.legacy_state(run),
        "status": states.status(run),
        "run_page_url": jobs.run_page_url(run),
    }
    out.update(_durations(run, "admitted_time"))
    if run.get("job_id") is not None:
        out["job_id"] = run["job_id"]
    if run.get("job_parameters"):
        out["job_parameters"] = run["job_parameters"]
    if run.get("overriding_parameters"):
        out["overriding_parameters"] = run["overriding_parameters"]
    if run.get("repair_history"):
        out["repair_history"] = [_repair_item(run, item) for item in run["repair_history"]]
    if tasks is not None:
        out["tasks"] = [render_task(jobs, run, t) for t in tasks]
    return out


def render_task_as_run(jobs: Jobs, run: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    rendered = render_task(jobs, run, task)
    out = {
        k: rendered[k]
        for k in (
            "run_id",
            "state",
            "status",
            "start_time",
            "end_time",
            "attempt_number",
            "run_page_url",
            "task_key",
            "setup_duration",
            "execution_duration",
            "cleanup_duration",
        )
    }
    out.update(
        {
            "run_name": task["task_key"],
            "run_type": "JOB_RUN",
            "parent_run_id": run["run_id"],
            "creator_user_name": run["creator_user_name"],
            "tasks": [rendered],
        }
    )
    if run.get("job_id") is not None:
        out["job_id"] = run["job_id"]
    return out


# ---------------------------------------------------------------------- jobs
def create(call: Call) -> dict[str, Any]:
    return {"job_id": call.workspace.jobs.create(dict(call.body), call.principal)}


def get(call: Call) -> dict[str, Any]:
    jobs = call.workspace.jobs
    with call.workspace.lock:
        job = jobs.get_job(require(call.query, "job_id"), call.principal)
        out = render_job(jobs, job)
        extra = _page_arrays(call, out["settings"], ("tasks", "job_clusters", "parameters", "environments"))
        result: dict[str, Any] = {**out, **extra}
        return result


def list_jobs(call: Call) -> dict[str, Any]:
    jobs = call.workspace.jobs
    limit = _limit(call, 20, 100)
    expand = call.bool_arg("expand_tasks")
    found = jobs.list_jobs(call.principal, call.query.get("name"))
    token = call.query.get("page_token")
    if token:
        cursor = _decode(token)
        found = [j for j in found if (j["created_time"], j["job_id"]) < (cursor["t"], cursor["j"])]
    page = found[:limit]
    out: dict[str, Any] = {"has_more": len(found) > limit}
    if page:
        out["jobs"] = [render_job(jobs, j, with_tasks=expand) for j in page]
    if len(found) > limit:
        out["next_page_token"] = _encode({"t": page[-1]["created_time"], "j": page[-1]["job_id"]})
    return out


def reset(call: Call) -> None:
    call.workspace.jobs.reset(require(call.body, "job_id"), require(call.body, "new_settings"), call.principal)


def update(call: Call) -> None:
    call.workspace.jobs.update(
        require(call.body, "job_id"),
        call.body.get("new_settings") or {},
        call.body.get("fields_to_remove") or [],
        call.principal,
    )


def delete(call: Call) -> None:
    call.workspace.jobs.delete(require(call.body, "job_id"), call.principal)


# ---------------------------------------------------------------------- runs
def run_now(call: Call) -> dict[str, Any]:
    require(call.body, "job_id")
    run = call.workspace.jobs.run_now(dict(call.body), call.principal)
    return {"run_id": run["run_id"], "number_in_job": run["number_in_job"]}


def submit(call: Call) -> dict[str, Any]:
    return {"run_id": call.workspace.jobs.submit(dict(call.body), call.principal)["run_id"]}


def get_run(call: Call) -> dict[str, Any]:
    jobs = call.workspace.jobs
    run_id = call.int_arg("run_id")
    if run_id is None:
        raise InvalidParameterValue("Missing required field: run_id")
    with call.workspace.lock:
        if run_id not in jobs.runs and run_id in jobs.task_index:
            found = jobs.find_task_run(run_id)
            assert found is not None
            jobs.require_run(found[0], call.principal, "CAN_VIEW")
            return render_task_as_run(jobs, *found)
        out = render_run(jobs, jobs.get_run(run_id, call.principal), tasks=jobs.runs[run_id]["tasks"])
        extra = _page_arrays(call, out, ("tasks", "job_clusters", "job_parameters", "repair_history"))
        return {**out, **extra}


def list_runs(call: Call) -> dict[str, Any]:
    jobs = call.workspace.jobs
    limit = _limit(call, 20, 25)
    runs = jobs.list_runs(
        call.principal,
        job_id=call.int_arg("job_id"),
        active_only=call.bool_arg("active_only"),
        completed_only=call.bool_arg("completed_only"),
        start_from=call.int_arg("start_time_from"),
        start_to=call.int_arg("start_time_to"),
        run_type=call.query.get("run_type"),
    )
    token = call.query.get("page_token")
    if token:
        cursor = _decode(token)
        runs = [r for r in runs if (r["start_time"], r["run_id"]) < (cursor["t"], cursor["r"])]
    page = runs[:limit]
    expand = call.bool_arg("expand_tasks")
    out: dict[str, Any] = {"has_more": len(runs) > limit}
    with call.workspace.lock:
        if page:
            out["runs"] = [render_run(jobs, r, tasks=r["tasks"] if expand else None) for r in page]
    if len(runs) > limit:
        out["next_page_token"] = _encode({"t": page[-1]["start_time"], "r": page[-1]["run_id"]})
    return out


def cancel(call: Call) -> None:
    call.workspace.jobs.cancel(require(call.body, "run_id"), call.principal)


def cancel_all(call: Call) -> None:
    call.workspace.jobs.cancel_all(call.body.get("job_id"), bool(call.body.get("all_queued_runs")), call.principal)


def delete_run(call: Call) -> None:
    call.workspace.jobs.delete_run(require(call.body, "run_id"), call.principal)


def repair(call: Call) -> dict[str, Any]:
    return {"repair_id": call.workspace.jobs.repair(dict(call.body), call.principal)}


def get_output(call: Call) -> dict[str, Any]:
    jobs = call.workspace.jobs
    run_id = call.int_arg("run_id")
    with call.workspace.lock:
        if run_id in jobs.runs:
            jobs.get_run(run_id, call.principal)
            raise InvalidParameterValue(
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead."
            )
        found = jobs.find_task_run(run_id) if run_id is not None else None
        if found is None:
            raise RunNotFound(run_id)
        run, task = found
        jobs.require_run(run, call.principal, "CAN_VIEW")
        out: dict[str, Any] = {"metadata": render_task_as_run(jobs, run, task)}
    assert jobs.executor is not None
    logs, truncated = jobs.executor.output_of(task)
    out["logs"] = logs
    out["logs_truncated"] = truncated
    if task.get("error"):
        out["error"] = task["error"]
    if task.get("error_trace"):
        out["error_trace"] = task["error_trace"]
    if "notebook_task" in task["spec"]:
        out["notebook_output"] = task.get("notebook_output") or {}
    return out
