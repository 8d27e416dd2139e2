"""From a `job.requested` spec to Databricks job settings: what the service adds (stable name, §8 tags,
run-as, its notification destination) and the content hash that decides create / reset / nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from databricks.sdk.service import jobs as dbx

from apev_contracts import JobRequested
from apev_contracts.events.jobs import JobSpec, TaskSpec
from apev_contracts.naming import job_tags
from apev_runtime.errors import PermanentError

MAX_HOOKS_PER_EVENT = 3  # Databricks' limit of webhook destinations per notification event
OUR_EVENTS = ("on_start", "on_success", "on_failure")
ALL_EVENTS = (*OUR_EVENTS, "on_duration_warning_threshold_exceeded")


def tags_for(request: JobRequested) -> dict[str, str]:
    """The job's tags: the spec's own, then §8's (which win: cost attribution relies on them)."""
    own = dict(request.job.tags) if request.job is not None else {}
    return {
        **own,
        **job_tags(
            request.tenant_id,
            request.kind,
            datasource_id=request.datasource_id,
            agent_id=request.agent_id,
            model_version=request.model_version,
        ),
    }


def spec_hash(request: JobRequested) -> str:
    """sha256 of what the requester asked for (spec + §8 tags), never of what this service adds (destination
    ids, run-as application ids, warehouse), so only a changed request resets the job."""
    assert request.job is not None
    canonical = json.dumps(
        {"job": request.job.model_dump(mode="json"), "tags": tags_for(request)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def user_hooks(spec: JobSpec) -> dict[str, list[str]]:
    """Destination ids the requester put in the spec (`webhook_notifications`, kept as an extra field)."""
    raw = (spec.model_extra or {}).get("webhook_notifications") or {}
    if not isinstance(raw, Mapping):
        raise PermanentError("job.webhook_notifications must be an object of event -> [{id}]")
    out: dict[str, list[str]] = {}
    for event, hooks in raw.items():
        if event not in ALL_EVENTS:
            raise PermanentError(f"job.webhook_notifications.{event} is not one of {list(ALL_EVENTS)}")
        if not isinstance(hooks, list) or not all(isinstance(h, Mapping) and h.get("id") for h in hooks):
            raise PermanentError(f"job.webhook_notifications.{event} must be a list of {{'id': <destination id>}}")
        out[event] = [str(h["id"]) for h in hooks]
    return out


def merge_hooks(
    mine: str | None, users: Mapping[str, list[str]], existing: Mapping[str, list[str]]
) -> dbx.WebhookNotifications:
    """The user's destinations (from the spec, and those already on the job that this service did not add),
    plus this service's on start, success and failure. Databricks allows 3 per event: more is refused here,
    naming the event, rather than silently dropping one."""
    merged: dict[str, list[str]] = {}
    for event in ALL_EVENTS:
        ids = [*users.get(event, []), *(i for i in existing.get(event, []) if i != mine)]
        ids = list(dict.fromkeys(ids))
        if mine is not None and event in OUR_EVENTS:
            ids.append(mine)
        if len(ids) > MAX_HOOKS_PER_EVENT:
            raise PermanentError(
                f"job.webhook_notifications.{event}: {len(ids)} destinations with the jobs service's own "
                f"completion destination; Databricks allows at most {MAX_HOOKS_PER_EVENT} per event "
                f"(the spec may name at most {MAX_HOOKS_PER_EVENT - (event in OUR_EVENTS)})"
            )
        if ids:
            merged[event] = ids
    return dbx.WebhookNotifications(**{e: [dbx.Webhook(id=i) for i in ids] for e, ids in merged.items()})


def hooks_of(settings: dbx.JobSettings | None) -> dict[str, list[str]]:
    hooks = settings.webhook_notifications if settings is not None else None
    if hooks is None:
        return {}
    return {e: [str(h.id) for h in (getattr(hooks, e) or []) if h.id] for e in ALL_EVENTS}


def _task(task: TaskSpec, warehouse_id: str | None) -> dbx.Task:
    extra: dict[str, Any] = {}
    if task.python_task is not None:
        extra["spark_python_task"] = dbx.SparkPythonTask(
            python_file=task.python_task.python_file, parameters=list(task.python_task.parameters)
        )
    elif task.sql_task is not None:
        wh = task.sql_task.warehouse_id or warehouse_id
        if not wh:
            raise PermanentError(f"task {task.task_key!r}: no sql_task.warehouse_id and no warehouse in the workspace")
        extra["sql_task"] = dbx.SqlTask(
            warehouse_id=wh,
            file=dbx.SqlTaskFile(path=task.sql_task.file, source=dbx.Source.WORKSPACE),
            parameters=dict(task.sql_task.parameters) or None,
        )
    elif task.notebook_task is not None:
        extra["notebook_task"] = dbx.NotebookTask(
            notebook_path=task.notebook_task.notebook_path,
            base_parameters=dict(task.notebook_task.base_parameters) or None,
        )
    return dbx.Task(
        task_key=task.task_key,
        depends_on=[dbx.TaskDependency(task_key=d.task_key) for d in task.depends_on] or None,
        description=task.description,
        timeout_seconds=task.timeout_seconds or None,
        max_retries=task.max_retries or None,
        **extra,
    )


def job_settings(
    request: JobRequested,
    *,
    destination_id: str | None,
    run_as: dbx.JobRunAs | None,
    warehouse_id: str | None,
    existing: dbx.JobSettings | None = None,
) -> dbx.JobSettings:
    spec = request.job
    assert spec is not None
    schedule = (
        dbx.CronSchedule(
            quartz_cron_expression=spec.schedule.quartz_cron_expression,
            timezone_id=spec.schedule.timezone_id,
            pause_status=dbx.PauseStatus(spec.schedule.pause_status),
        )
        if spec.schedule is not None
        else None
    )
    return dbx.JobSettings(
        name=request.job_name,
        description=spec.description,
        tasks=[_task(t, warehouse_id) for t in spec.tasks],
        parameters=[dbx.JobParameterDefinition(name=p.name, default=p.default) for p in spec.parameters] or None,
        tags=tags_for(request),
        timeout_seconds=spec.timeout_seconds or None,
        max_concurrent_runs=spec.max_concurrent_runs,
        queue=dbx.QueueSettings(enabled=queue_enabled(spec)),
        schedule=schedule,
        run_as=run_as,
        webhook_notifications=merge_hooks(destination_id, user_hooks(spec), hooks_of(existing)),
    )


def queue_enabled(spec: JobSpec) -> bool:
    """Jobs queue by default (as 2.2 jobs do); a spec may say `"queue": {"enabled": false}` (kept as an extra
    field), and then a run over `max_concurrent_runs` is SKIPPED."""
    queue = (spec.model_extra or {}).get("queue")
    if queue is None:
        return True
    if not isinstance(queue, Mapping) or not isinstance(queue.get("enabled"), bool):
        raise PermanentError('job.queue must be {"enabled": true|false}')
    return bool(queue["enabled"])


def needs_warehouse(spec: JobSpec) -> bool:
    return any(t.sql_task is not None and t.sql_task.warehouse_id is None for t in spec.tasks)
