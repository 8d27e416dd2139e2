"""Jobs and runs without HTTP: validation, permissions, idempotency, run creation, cancel, repair.

Execution (processes, the DAG, timeouts, retries) lives in `execution.py`; both work on the same run
records under the workspace lock. A run record keeps both state vocabularies through `states.set_state`.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Identity, Principal
from apev_workspace.jobs import states
from apev_workspace.jobs.exceptions import (
    InvalidParameterValue,
    InvalidState,
    JobNotFound,
    PermissionDenied,
    RunNotFound,
)
from apev_workspace.notifications.validation import validate_notifications
from apev_workspace.schedules.validation import validate_schedule

if TYPE_CHECKING:
    from apev_workspace.jobs.execution import Executor

TASK_TYPES = (
    "spark_python_task",
    "notebook_task",
    "sql_task",
    "python_wheel_task",
    "run_job_task",
    "condition_task",
    "spark_jar_task",
    "spark_submit_task",
    "pipeline_task",
    "dbt_task",
    "for_each_task",
    "dashboard_task",
    "power_bi_task",
    "clean_rooms_notebook_task",
    "gen_ai_compute_task",
)
RUN_IF = ("ALL_SUCCESS", "ALL_DONE", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS", "ALL_FAILED", "AT_LEAST_ONE_FAILED")
LEVELS = {"CAN_VIEW": 1, "CAN_MANAGE_RUN": 2, "CAN_MANAGE": 3, "IS_OWNER": 4}
_TASK_KEY = re.compile(r"^[\w\-.]{1,100}$")


def now_ms() -> int:
    return int(time.time() * 1000)


def validate_tasks(tasks: Any) -> list[dict[str, Any]]:
    if tasks is None:
        return []
    if not isinstance(tasks, list):
        raise InvalidParameterValue("tasks must be a list")
    keys: set[str] = set()
    for task in tasks:
        key = task.get("task_key")
        if not key or not _TASK_KEY.match(key):
            raise InvalidParameterValue(f"Invalid task_key {key!r}: use up to 100 letters, digits, '_', '-' or '.'")
        if key in keys:
            raise InvalidParameterValue(f"Task key {key} is duplicated; task keys must be unique within a job")
        keys.add(key)
        kinds = [t for t in TASK_TYPES if task.get(t) is not None]
        if len(kinds) != 1:
            raise InvalidParameterValue(f"Task {key} must specify exactly one task type (e.g. spark_python_task)")
        if kinds[0] == "spark_python_task" and not task["spark_python_task"].get("python_file"):
            raise InvalidParameterValue(f"Task {key}: spark_python_task.python_file is required")
        if task.get("run_if", "ALL_SUCCESS") not in RUN_IF:
            raise InvalidParameterValue(f"Task {key}: run_if must be one of {', '.join(RUN_IF)}")
        for field in ("timeout_seconds", "max_retries", "min_retry_interval_millis"):
            value = task.get(field)
            if value is not None and (not isinstance(value, int) or value < (-1 if field == "max_retries" else 0)):
                raise InvalidParameterValue(f"Task {key}: {field} must be a non-negative integer")
    for task in tasks:
        for dep in task.get("depends_on") or []:
            if dep.get("task_key") not in keys:
                raise InvalidParameterValue(
                    f"Task {task['task_key']} depends on {dep.get('task_key')}, which is not a task of this job"
                )
    _check_acyclic(tasks)
    return tasks


def _check_acyclic(tasks: list[dict[str, Any]]) -> None:
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on") or []] for t in tasks}
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            raise InvalidParameterValue(f"The task dependency graph has a cycle through {key}")
        visiting.add(key)
        for dep in deps[key]:
            visit(dep)
        visiting.discard(key)
        done.add(key)

    for key in deps:
        visit(key)


def validate_settings(settings: dict[str, Any]) -> dict[str, Any]:
    settings = copy.deepcopy(settings)
    settings.setdefault("name", "Untitled")
    settings.setdefault("max_concurrent_runs", 1)
    settings.setdefault("timeout_seconds", 0)
    settings.setdefault("email_notifications", {})
    settings.setdefault("webhook_notifications", {})
    settings.setdefault("format", "MULTI_TASK")
    settings.setdefault("queue", {"enabled": True})
    mcr = settings["max_concurrent_runs"]
    if not isinstance(mcr, int) or not 0 <= mcr <= 1000:
        raise InvalidParameterValue("max_concurrent_runs must be an integer between 0 and 1000")
    if not isinstance(settings["timeout_seconds"], int) or settings["timeout_seconds"] < 0:
        raise InvalidParameterValue("timeout_seconds must be a non-negative integer")
    validate_tasks(settings.get("tasks"))
    names = [p.get("name") for p in settings.get("parameters") or []]
    for param in settings.get("parameters") or []:
        if not param.get("name") or "default" not in param:
            raise InvalidParameterValue("Each job parameter needs a name and a default")
    if len(names) != len(set(names)):
        raise InvalidParameterValue("Job parameter names must be unique")
    if len(settings.get("tags") or {}) > 25:
        raise InvalidParameterValue("A job can have at most 25 tags")
    validate_schedule(settings)
    validate_notifications(settings)
    return settings


class Jobs:
    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        identity: Identity,
        *,
        workspace_id: str,
        public_url: Callable[[], str],
    ) -> None:
        self._store = store
        self._lock = lock
        self.identity = identity
        self.workspace_id = workspace_id
        self.public_url = public_url
        self.jobs: dict[int, dict[str, Any]] = {int(k): v for k, v in store.load("job").items()}
        self.runs: dict[int, dict[str, Any]] = {int(k): v for k, v in store.load("job_run").items()}
        self.idempotency: dict[str, int] = {k: int(v) for k, v in store.load("run_idempotency").items()}
        self.task_index: dict[int, int] = {}  # task run id (every attempt) -> parent run id
        for run in self.runs.values():
            self._index(run)
        self.executor: Executor | None = None  # wired by the workspace

    # ------------------------------------------------------------------ persistence helpers
    def save_run(self, run: dict[str, Any]) -> None:
        self._store.put("job_run", run["run_id"], run)

    def _save_job(self, job: dict[str, Any]) -> None:
        self._store.put("job", job["job_id"], job)

    def _index(self, run: dict[str, Any]) -> None:
        for task in run["tasks"]:
            self.task_index[task["run_id"]] = run["run_id"]
            for attempt in task.get("previous_attempts", []):
                self.task_index[attempt["run_id"]] = run["run_id"]

    def new_run_id(self) -> int:
        return self._store.next_id("run_id", start=100_000_001)

    def _wake(self) -> None:
        if self.executor is not None:
            self.executor.wake()

    # ------------------------------------------------------------------ permissions
    def job_level(self, job: dict[str, Any], who: Principal) -> int:
        if who.is_admin or job["creator_id"] == who.id:
            return LEVELS["IS_OWNER"]
        level = 0
        for entry in job.get("acl", []):
            name = entry.get("user_name") or entry.get("group_name") or entry.get("service_principal_name")
            if name in who.acl_names:
                level = max(level, LEVELS.get(entry.get("permission_level", ""), 0))
        return level

    def _require(self, job: dict[str, Any], who: Principal, needed: str) -> None:
        if self.job_level(job, who) < LEVELS[needed]:
            raise PermissionDenied(f"{who.name} does not have {needed} permissions on Job with id {job['job_id']}")

    def get_job(self, job_id: Any, who: Principal, needed: str = "CAN_VIEW") -> dict[str, Any]:
        try:
            job = self.jobs.get(int(job_id))
        except (TypeError, ValueError):
            raise InvalidParameterValue(f"Invalid job_id {job_id!r}") from None
        if job is None:
            raise JobNotFound(job_id)
        self._require(job, who, needed)
        return job

    def _run_as(self, settings: dict[str, Any], who: Principal) -> Principal:
        run_as = settings.get("run_as") or {}
        if not run_as:
            return who
        target = self.identity.find_principal(
            user_name=run_as.get("user_name"), service_principal_name=run_as.get("service_principal_name")
        )
        if target.id != who.id and not who.is_admin:
            raise PermissionDenied(f"{who.name} may not set run_as to {target.name}: only admins can")
        return target

    # ------------------------------------------------------------------ jobs
    def create(self, body: dict[str, Any], who: Principal) -> int:
        acl = body.pop("access_control_list", None) or []
        settings = validate_settings(body)
        with self._lock:
            run_as = self._run_as(settings, who)
            job_id = self._store.next_id("job_id", start=1_000_001)
            job = {
                "job_id": job_id,
                "creator_user_name": who.name,
                "creator_id": who.id,
                "creator_kind": who.kind,
                "run_as": {"kind": run_as.kind, "id": run_as.id, "name": run_as.name},
                "created_time": now_ms(),
                "settings": settings,
                "acl": acl,
            }
            self.jobs[job_id] = job
            self._save_job(job)
            return job_id

    def reset(self, job_id: Any, new_settings: dict[str, Any], who: Principal) -> None:
        settings = validate_settings(new_settings)
        with self._lock:
            job = self.get_job(job_id, who, "CAN_MANAGE")
            run_as = self._run_as(settings, who) if settings.get("run_as") else self._creator(job)
            job["settings"] = settings
            job["run_as"] = {"kind": run_as.kind, "id": run_as.id, "name": run_as.name}
            self._save_job(job)

    def _creator(self, job: dict[str, Any]) -> Principal:
        return self.identity.principal_for(job["creator_kind"], job["creator_id"])

    def update(self, job_id: Any, new_settings: dict[str, Any], fields_to_remove: list[str], who: Principal) -> None:
        with self._lock:
            job = self.get_job(job_id, who, "CAN_MANAGE")
            settings = copy.deepcopy(job["settings"])
            for field in fields_to_remove:
                if "/" in field:
                    array, key = field.split("/", 1)
                    id_field = "task_key" if array == "tasks" else "job_cluster_key"
                    settings[array] = [x for x in settings.get(array, []) if x.get(id_field) != key]
                else:
                    settings.pop(field, None)
            for field, value in new_settings.items():
                if field in ("tasks", "job_clusters") and isinstance(value, list):
                    id_field = "task_key" if field == "tasks" else "job_cluster_key"
                    merged = {x[id_field]: x for x in settings.get(field, [])}
                    for item in value:
                        merged[item.get(id_field)] = item
                    settings[field] = list(merged.values())
                else:
                    settings[field] = value
            settings = validate_settings(settings)
            run_as = self._run_as(settings, who) if "run_as" in new_settings else None
            job["settings"] = settings
            if run_as is not None:
                job["run_as"] = {"kind": run_as.kind, "id": run_as.id, "name": run_as.name}
            self._save_job(job)

    def delete(self, job_id: Any, who: Principal) -> None:
        with self._lock:
            job = self.get_job(job_id, who, "CAN_MANAGE")
            for run in self.runs.values():
                if run.get("job_id") == job["job_id"] and states.is_active(run):
                    self.cancel(run["run_id"], who)
            del self.jobs[job["job_id"]]
            self._store.delete("job", job["job_id"])

    def list_jobs(self, who: Principal, name: str | None) -> list[dict[str, Any]]:
        with self._lock:
            jobs = [j for j in self.jobs.values() if self.job_level(j, who) > 0]
            if name is not None:
                jobs = [j for j in jobs if j["settings"].get("name", "").lower() == name.lower()]
            return sorted(jobs, key=lambda j: (j["created_time"], j["job_id"]), reverse=True)

    # ------------------------------------------------------------------ runs
    def _claim_token(self, token: str | None, who: Principal) -> dict[str, Any] | None:
        if token is None:
            return None
        if not isinstance(token, str) or not 0 < len(token) <= 64:
            raise InvalidParameterValue("idempotency_token must be a string of at most 64 characters")
        run_id = self.idempotency.get(token)
        run = self.runs.get(run_id) if run_id is not None else None
        if run is not None:
            self.require_run(run, who, "CAN_VIEW")  # a token never reveals someone else's run
        return run

    def _bind_token(self, token: str | None, run_id: int) -> None:
        if token is not None:
            self.idempotency[token] = run_id
            self._store.put("run_idempotency", token, run_id)

    def run_now(self, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        token = body.get("idempotency_token")
        with self._lock:
            existing = self._claim_token(token, who)
            if existing is not None:
                return existing
            job = self.get_job(body.get("job_id"), who, "CAN_MANAGE_RUN")
            settings = job["settings"]
            declared = {p["name"]: p["default"] for p in settings.get("parameters") or []}
            given = body.get("job_parameters") or {}
            unknown = sorted(set(given) - set(declared))
            if unknown:
                raise InvalidParameterValue(
                    f"Job parameters {', '.join(unknown)} are not defined in job {job['job_id']}"
                )
            params = {**declared, **{k: str(v) for k, v in given.items()}}
            tasks = copy.deepcopy(settings.get("tasks") or [])
            only = body.get("only")
            if only:
                missing = sorted(set(only) - {t["task_key"] for t in tasks})
                if missing:
                    raise InvalidParameterValue(f"Tasks {', '.join(missing)} in 'only' are not tasks of this job")
                tasks = [t for t in tasks if t["task_key"] in only]
                for task in tasks:
                    task["depends_on"] = [d for d in task.get("depends_on") or [] if d["task_key"] in only]
            if body.get("python_params") is not None:
                for task in tasks:
                    if "spark_python_task" in task:
                        task["spark_python_task"]["parameters"] = [str(p) for p in body["python_params"]]
            run_as = self.identity.principal_for(job["run_as"]["kind"], job["run_as"]["id"])
            number = self._store.next_id(f"run_number:{job['job_id']}")
            queue_enabled = (body.get("queue") or settings.get("queue") or {}).get("enabled", True)
            run = self._new_run(
                job_id=job["job_id"],
                run_name=settings.get("name"),
                run_type="JOB_RUN",
                creator=who,
                run_as=run_as,
                tasks=tasks,
                params=params,
                declared=declared,
                number=number,
                timeout=settings.get("timeout_seconds") or 0,
                max_concurrent=settings.get("max_concurrent_runs", 1),
                queue_enabled=queue_enabled,
                token=token,
                overriding={"job_parameters": given} if given else None,
            )
            return run

    def submit(self, body: dict[str, Any], who: Principal) -> dict[str, Any]:
        token = body.get("idempotency_token")
        tasks = validate_tasks(copy.deepcopy(body.get("tasks") or []))
        if not tasks:
            raise InvalidParameterValue("runs/submit needs at least one task")
        with self._lock:
            existing = self._claim_token(token, who)
            if existing is not None:
                return existing
            run_as = self._run_as(body, who)
            return self._new_run(
                job_id=None,
                run_name=body.get("run_name") or "Untitled",
                run_type="SUBMIT_RUN",
                creator=who,
                run_as=run_as,
                tasks=tasks,
                params={},
                declared={},
                number=None,
                timeout=body.get("timeout_seconds") or 0,
                max_concurrent=None,
                queue_enabled=True,
                token=token,
                overriding=None,
                acl=body.get("access_control_list") or [],
            )

    def _new_run(
        self,
        *,
        job_id: int | None,
        run_name: str | None,
        run_type: str,
        creator: Principal,
        run_as: Principal,
        tasks: list[dict[str, Any]],
        params: dict[str, str],
        declared: dict[str, Any],
        number: int | None,
        timeout: int,
        max_concurrent: int | None,
        queue_enabled: bool,
        token: str | None,
        overriding: dict[str, Any] | None,
        acl: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        run_id = self.new_run_id()
        start = now_ms()
        run: dict[str, Any] = {
            "run_id": run_id,
            "job_id": job_id,
            "number_in_job": number or run_id,
            "run_name": run_name,
            "run_type": run_type,
            "trigger": "ONE_TIME",
            "creator_user_name": creator.name,
            "creator_id": creator.id,
            "run_as": {"kind": run_as.kind, "id": run_as.id, "name": run_as.name},
            "start_time": start,
            "admitted_time": None,
            "end_time": 0,
            "params": params,
            "job_parameters": [{"name": k, "default": str(v), "value": params[k]} for k, v in declared.items()],
            "overriding_parameters": overriding,
            "timeout_seconds": timeout,
            "max_concurrent_runs": max_concurrent,
            "idempotency_token": token,
            "acl": acl or [],
            "repair_history": [],
            "tasks": [self._new_task_run(task, start) for task in tasks],
        }
        states.set_state(run, "QUEUED")
        run["queue_reason"] = ("ACTIVE_RUNS_LIMIT_REACHED", "Waiting for an executor slot")
        if max_concurrent is not None and job_id is not None:
            admitted = sum(
                1
                for r in self.runs.values()
                if r.get("job_id") == job_id and r["life"] in ("PENDING", "RUNNING", "TERMINATING")
            )
            if (admitted >= max_concurrent or max_concurrent == 0) and not queue_enabled:
                message = (
                    f"Skipping this run because the limit of {max_concurrent} maximum concurrent runs was reached."
                )
                states.set_state(run, "SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED", message)
                run["end_time"] = start
                for task in run["tasks"]:
                    states.set_state(task, "SKIPPED", "MAXIMUM_CONCURRENT_RUNS_REACHED", message)
        self.runs[run_id] = run
        self._index(run)
        self._bind_token(token, run_id)
        self.save_run(run)
        self._wake()
        return run

    def _new_task_run(self, spec: dict[str, Any], now: int, attempt: int = 0) -> dict[str, Any]:
        task: dict[str, Any] = {
            "task_key": spec["task_key"],
            "run_id": self.new_run_id(),
            "spec": spec,
            "attempt_number": attempt,
            "start_time": 0,
            "end_time": 0,
            "created": now,
            "previous_attempts": [],
        }
        states.set_state(task, "PENDING", message="Waiting for upstream tasks" if spec.get("depends_on") else "")
        return task

    def get_run(self, run_id: Any, who: Principal, needed: str = "CAN_VIEW") -> dict[str, Any]:
        try:
            rid = int(run_id)
        except (TypeError, ValueError):
            raise InvalidParameterValue(f"Invalid run_id {run_id!r}") from None
        run = self.runs.get(rid)
        if run is None:
            raise RunNotFound(run_id)
        self.require_run(run, who, needed)
        return run

    def require_run(self, run: dict[str, Any], who: Principal, needed: str) -> None:
        job = self.jobs.get(run["job_id"]) if run.get("job_id") else None
        if job is not None:
            self._require(job, who, needed)
        elif not (
            who.is_admin
            or run["creator_id"] == who.id
            or self.job_level(
                {"creator_id": run["creator_id"], "acl": run.get("acl", []), "job_id": run["run_id"]}, who
            )
            >= LEVELS[needed]
        ):
            raise PermissionDenied(f"{who.name} does not have {needed} permissions on run {run['run_id']}")

    def find_task_run(self, task_run_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        parent = self.runs.get(self.task_index.get(task_run_id, -1))
        if parent is None:
            return None
        for task in parent["tasks"]:
            if task["run_id"] == task_run_id:
                return parent, task
            for attempt in task.get("previous_attempts", []):
                if attempt["run_id"] == task_run_id:
                    return parent, attempt
        return None

    def list_runs(
        self,
        who: Principal,
        *,
        job_id: int | None,
        active_only: bool,
        completed_only: bool,
        start_from: int | None,
        start_to: int | None,
        run_type: str | None,
    ) -> list[dict[str, Any]]:
        if active_only and completed_only:
            raise InvalidParameterValue("active_only and completed_only cannot both be true")
        with self._lock:
            if job_id is not None:
                self.get_job(job_id, who)
            out = []
            for run in self.runs.values():
                if job_id is not None and run.get("job_id") != job_id:
                    continue
                if active_only and not states.is_active(run):
                    continue
                if completed_only and states.is_active(run):
                    continue
                if start_from is not None and run["start_time"] < start_from:
                    continue
                if start_to is not None and run["start_time"] > start_to:
                    continue
                if run_type is not None and run["run_type"] != run_type:
                    continue
                try:
                    self.require_run(run, who, "CAN_VIEW")
                except PermissionDenied:
                    continue
                out.append(run)
            return sorted(out, key=lambda r: (r["start_time"], r["run_id"]), reverse=True)

    def cancel(self, run_id: Any, who: Principal) -> None:
        with self._lock:
            run = self.get_run(run_id, who, "CAN_MANAGE_RUN")
            if not states.is_active(run):
                return
            assert self.executor is not None
            self.executor.stop_run(run, "CANCELED", "Run was canceled by the user.")

    def cancel_all(self, job_id: Any, all_queued: bool, who: Principal) -> None:
        with self._lock:
            if job_id is None and not all_queued:
                raise InvalidParameterValue("Either job_id or all_queued_runs must be set")
            if job_id is not None:
                self.get_job(job_id, who, "CAN_MANAGE_RUN")
            for run in list(self.runs.values()):
                if not states.is_active(run):
                    continue
                if job_id is not None and run.get("job_id") != int(job_id):
                    continue
                if job_id is None and run["life"] != "QUEUED":
                    continue
                try:
                    self.require_run(run, who, "CAN_MANAGE_RUN")
                except PermissionDenied:
                    continue
                assert self.executor is not None
                self.executor.stop_run(run, "CANCELED", "Run was canceled by the user.")

    def delete_run(self, run_id: Any, who: Principal) -> None:
        with self._lock:
            run = self.get_run(run_id, who, "CAN_MANAGE_RUN")
            if states.is_active(run):
                raise InvalidState(f"Run {run['run_id']} is active; cancel it before deleting it")
            del self.runs[run["run_id"]]
            self._store.delete("job_run", run["run_id"])

    def repair(self, body: dict[str, Any], who: Principal) -> int:
        with self._lock:
            run = self.get_run(body.get("run_id"), who, "CAN_MANAGE_RUN")
            if states.is_active(run):
                raise InvalidState(f"Run {run['run_id']} is still in progress and cannot be repaired")
            rerun_tasks = body.get("rerun_tasks") or []
            rerun_failed = bool(body.get("rerun_all_failed_tasks"))
            if bool(rerun_tasks) == rerun_failed:
                raise InvalidParameterValue("Specify exactly one of rerun_tasks and rerun_all_failed_tasks")
            repairs = [h for h in run["repair_history"] if h["type"] == "REPAIR"]
            latest = body.get("latest_repair_id")
            if repairs and (latest is None or int(latest) != repairs[-1]["id"]):
                raise InvalidParameterValue(
                    f"latest_repair_id must be {repairs[-1]['id']}, the id of the run's latest repair"
                )
            by_key = {t["task_key"]: t for t in run["tasks"]}
            if rerun_failed:
                keys = [t["task_key"] for t in run["tasks"] if t.get("result") not in states.SUCCEEDED]
            else:
                missing = sorted(set(rerun_tasks) - set(by_key))
                if missing:
                    raise InvalidParameterValue(f"Tasks {', '.join(missing)} are not tasks of run {run['run_id']}")
                keys = list(rerun_tasks)
            if body.get("rerun_dependent_tasks"):
                keys = self._with_dependents(run, keys)
            if not keys:
                raise InvalidParameterValue("There are no tasks to repair in this run")
            given = body.get("job_parameters") or {}
            if given:
                run["params"].update({k: str(v) for k, v in given.items()})
                for param in run["job_parameters"]:
                    param["value"] = run["params"].get(param["name"], param["default"])
            if not run["repair_history"]:
                run["repair_history"].append(self._history_item(run, "ORIGINAL", run["run_id"]))
            now = now_ms()
            for i, task in enumerate(run["tasks"]):
                if task["task_key"] in keys:
                    fresh = self._new_task_run(task["spec"], now)
                    fresh["previous_attempts"] = [
                        *task.get("previous_attempts", []),
                        {k: v for k, v in task.items() if k != "previous_attempts"},
                    ]
                    run["tasks"][i] = fresh
            repair_id = self.new_run_id()
            item = {
                "type": "REPAIR",
                "id": repair_id,
                "start_time": now,
                "end_time": 0,
                "task_run_ids": [t["run_id"] for t in run["tasks"] if t["task_key"] in keys],
            }
            run["repair_history"].append(item)
            run["end_time"] = 0
            run.pop("legacy_life", None)
            states.set_state(run, "RUNNING")
            self._index(run)
            self.save_run(run)
            self._wake()
            return repair_id

    @staticmethod
    def _with_dependents(run: dict[str, Any], keys: list[str]) -> list[str]:
        selected = set(keys)
        changed = True
        while changed:
            changed = False
            for task in run["tasks"]:
                deps = {d["task_key"] for d in task["spec"].get("depends_on") or []}
                if task["task_key"] not in selected and deps & selected:
                    selected.add(task["task_key"])
                    changed = True
        return [t["task_key"] for t in run["tasks"] if t["task_key"] in selected]

    @staticmethod
    def _history_item(run: dict[str, Any], kind: str, item_id: int) -> dict[str, Any]:
        return {
            "type": kind,
            "id": item_id,
            "start_time": run["start_time"],
            "end_time": run["end_time"],
            "task_run_ids": [t["run_id"] for t in run["tasks"]],
            "snapshot": {
                "life": run["life"],
                "result": run.get("result"),
                "message": run.get("message", ""),
                "term": run.get("term"),
                "legacy_life": run.get("legacy_life"),
            },
        }

    def run_page_url(self, run: dict[str, Any], task_run_id: int | None = None) -> str:
        rid = task_run_id or run["run_id"]
        job = run.get("job_id") or run["run_id"]
        return f"{self.public_url()}/?o={self.workspace_id}#job/{job}/run/{rid}"
