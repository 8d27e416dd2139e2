"""The executor: task DAGs, queueing, a bounded pool of task processes, timeouts, retries, cancel.

One background thread ticks every ~50 ms (and at once when woken) under the workspace lock. A run waits
QUEUED until its job's `max_concurrent_runs` allows it and an executor slot is free; at most `slots` task
processes run at once across the workspace, the rest wait (as a real workspace queues). Task processes run
in their own session, so cancel and timeouts kill the whole process tree.

Task types plug in through `RUNNERS` (task type field -> function returning a `Handle`); this issue
provides `spark_python_task`; SQL and notebook tasks add themselves later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import psutil

from apev_workspace.core.exceptions import ApiError
from apev_workspace.jobs import states
from apev_workspace.jobs.models import TASK_TYPES, Jobs, now_ms
from apev_workspace.jobs.templating import UnknownReference, context_for, substitute

if TYPE_CHECKING:
    from apev_workspace.identity.models import Identity
    from apev_workspace.workspace_files.models import WorkspaceFiles

log = logging.getLogger("apev_workspace.jobs")
LOG_LIMIT = 5 * 1024 * 1024


@dataclass
class Outcome:
    result: str  # SUCCESS or FAILED
    message: str = ""
    error: str | None = None
    error_trace: str | None = None


class Handle(Protocol):
    def poll(self) -> Outcome | None: ...

    def kill(self) -> None: ...


class TaskSetupError(Exception):
    """A task that cannot start (missing file, bad reference): it fails without a process."""


def kill_tree(pid: int, create_time: float | None = None) -> None:
    """Kill a task process, everything it spawned, and its session's process group."""
    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) > 1:
            return  # the pid was reused by an unrelated process
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        procs = []
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


class ProcessHandle:
    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, files: list[IO[bytes]]) -> None:
        self.proc = proc
        self.workdir = workdir
        self._files = files

    def poll(self) -> Outcome | None:
        code = self.proc.poll()
        if code is None:
            return None
        self._close()
        if code == 0:
            return Outcome("SUCCESS")
        error, trace = f"Process exited with code {code}", tail(self.workdir / "stderr", 64 * 1024)
        err_file = self.workdir / "error.json"
        if err_file.exists():
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(err_file.read_text())
                error, trace = data.get("error") or error, data.get("error_trace") or trace
        return Outcome("FAILED", "Workload failed, see run output for details", error, trace)

    def kill(self) -> None:
        kill_tree(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._close()

    def _close(self) -> None:
        for f in self._files:
            f.close()


def tail(path: Path, limit: int = LOG_LIMIT) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


Runner = Callable[["Executor", dict[str, Any], dict[str, Any]], Handle]


def run_spark_python_task(ex: Executor, run: dict[str, Any], task: dict[str, Any]) -> Handle:
    spec = task["spec"]["spark_python_task"]
    if spec.get("source", "WORKSPACE") != "WORKSPACE":
        raise TaskSetupError(f"spark_python_task source {spec['source']} is not supported locally; use WORKSPACE")
    values = context_for(run, task)
    try:
        path = substitute(spec["python_file"], values)
        args = [substitute(str(p), values) for p in spec.get("parameters") or []]
    except UnknownReference as err:
        raise TaskSetupError(str(err)) from None
    try:
        obj, code = ex.files.read(path)
    except ApiError as err:
        raise TaskSetupError(f"Cannot read python_file {path}: {err.message}") from None
    workdir = ex.runs_dir / str(task["run_id"])
    sources = workdir / "src"  # the script's workspace folder, so sibling modules import as on Databricks
    sources.mkdir(parents=True, exist_ok=True)
    ex.files.materialize(posixpath.dirname(obj["path"]), sources)
    script = sources / (posixpath.basename(obj["path"]) or "task.py")
    script.write_bytes(code)
    env = ex.task_env(run, task, workdir)
    proc, files = spawn_task_process(
        ["apev_workspace.jobs.task_entry", str(script), *args], cwd=sources, env=env, workdir=workdir, task=task
    )
    return ProcessHandle(proc, workdir, files)


def spawn_task_process(
    module_argv: list[str], *, cwd: Path, env: dict[str, str], workdir: Path, task: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], list[IO[bytes]]]:
    """`python -m <module_argv>` in its own session (so cancel kills the whole tree), output to the task's
    stdout/stderr files; the pid and its start time are recorded on the task so a restart can find it."""
    stdout, stderr = (workdir / "stdout").open("wb"), (workdir / "stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", *module_argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
    task["pid"] = proc.pid
    with contextlib.suppress(psutil.Error):
        task["pid_create_time"] = psutil.Process(proc.pid).create_time()
    return proc, [stdout, stderr]


RUNNERS: dict[str, Runner] = {"spark_python_task": run_spark_python_task}
RunListener = Callable[[str, dict[str, Any]], None]
TaskListener = Callable[[str, dict[str, Any], dict[str, Any]], None]


class Executor:
    def __init__(
        self,
        jobs: Jobs,
        identity: Identity,
        files: WorkspaceFiles,
        lock: threading.RLock,
        *,
        data_dir: Path,
        slots: int,
        failed_multitask_internal_error: bool = False,
    ) -> None:
        self.jobs = jobs
        self.identity = identity
        self.files = files
        self.lock = lock
        self.runs_dir = data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.slots = max(1, slots)
        self.failed_multitask_internal_error = failed_multitask_internal_error
        self.handles: dict[int, Handle] = {}
        self.listeners: list[RunListener] = []  # called under the lock with ("run.started"|"run.finished", run)
        # called under the lock with ("task.started"|"task.finished", run, task attempt): notifications
        self.task_listeners: list[TaskListener] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        jobs.executor = self

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """After a restart: QUEUED runs that never started resume; runs that were executing end INTERNAL_ERROR."""
        with self.lock:
            for run in self.jobs.runs.values():
                if not states.is_active(run):
                    continue
                if run["life"] == "QUEUED" and all(t["start_time"] == 0 for t in run["tasks"]):
                    continue
                message = "The local workspace restarted while this run was active; the run was ended."
                for task in run["tasks"]:
                    if "pid" in task and states.is_active(task):
                        kill_tree(task["pid"], task.get("pid_create_time"))
                    self._revoke(task)
                    if states.is_active(task):
                        states.set_state(task, "INTERNAL_ERROR", "FAILED", message, "INTERNAL_ERROR", "INTERNAL_ERROR")
                        task["end_time"] = now_ms()
                states.set_state(run, "INTERNAL_ERROR", "FAILED", message, "INTERNAL_ERROR", "INTERNAL_ERROR")
                run["end_time"] = now_ms()
                self._close_repair(run)
                self.jobs.save_run(run)
                self._emit("run.finished", run)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="apev-workspace-executor", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self.lock:
            for handle in list(self.handles.values()):
                handle.kill()
            self.handles.clear()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                with self.lock:
                    self.tick()
            except Exception:  # keep executing other runs; the failure is a bug to see in the log
                log.exception("executor tick failed")

    # ------------------------------------------------------------------ one step
    def tick(self) -> None:
        now = now_ms()
        active = sorted(
            (r for r in self.jobs.runs.values() if states.is_active(r)), key=lambda r: (r["start_time"], r["run_id"])
        )
        for run in active:
            if self._advance(run, now):
                self.jobs.save_run(run)
        self._admit_and_launch([r for r in active if states.is_active(r)], now)

    def _advance(self, run: dict[str, Any], now: int) -> bool:
        changed = False
        timeout = run.get("timeout_seconds") or 0
        if timeout and run.get("admitted_time") and now - run["admitted_time"] > timeout * 1000:
            self.stop_run(run, "TIMEDOUT", f"Run timed out after {timeout} seconds.")
            return False
        for task in list(run["tasks"]):
            if task["life"] == "RUNNING":
                changed |= self._poll_task(run, task, now)
            elif task["life"] == "WAITING_FOR_RETRY" and now >= task.get("retry_at", 0):
                states.set_state(task, "PENDING", message="Waiting for an executor slot")
                task["ready"] = True
                changed = True
        changed |= self._resolve_dependencies(run)
        if run["life"] != "QUEUED" and all(not states.is_active(t) for t in run["tasks"]):
            self._finish_run(run, now)
            changed = True
        return changed

    def _poll_task(self, run: dict[str, Any], task: dict[str, Any], now: int) -> bool:
        handle = self.handles.get(task["run_id"])
        if handle is None:
            return False
        outcome = handle.poll()
        timeout = task["spec"].get("timeout_seconds") or 0
        if outcome is None and timeout and now - task["start_time"] > timeout * 1000:
            handle.kill()
            outcome = Outcome("TIMEDOUT", f"Task timed out after {timeout} seconds.")
        if outcome is None:
            return False
        self._finish_attempt(run, task, outcome, now)
        return True

    def _finish_attempt(self, run: dict[str, Any], task: dict[str, Any], outcome: Outcome, now: int) -> None:
        self.handles.pop(task["run_id"], None)
        self._revoke(task)
        task["end_time"] = now
        task["error"], task["error_trace"] = outcome.error, outcome.error_trace
        states.set_state(task, "TERMINATED", outcome.result, outcome.message)
        self._emit_task("task.finished", run, task)
        spec = task["spec"]
        retries = spec.get("max_retries", 0) or 0
        retryable = outcome.result == "FAILED" or (outcome.result == "TIMEDOUT" and spec.get("retry_on_timeout"))
        if retryable and run["life"] == "RUNNING" and (retries == -1 or task["attempt_number"] < retries):
            fresh = self.jobs._new_task_run(spec, now, attempt=task["attempt_number"] + 1)
            fresh["previous_attempts"] = [
                *task.get("previous_attempts", []),
                {k: v for k, v in task.items() if k != "previous_attempts"},
            ]
            states.set_state(fresh, "WAITING_FOR_RETRY", message=f"Retrying after: {outcome.error or outcome.message}")
            fresh["retry_at"] = now + int(spec.get("min_retry_interval_millis") or 0)
            run["tasks"][run["tasks"].index(task)] = fresh
            self.jobs.task_index[fresh["run_id"]] = run["run_id"]

    def _resolve_dependencies(self, run: dict[str, Any]) -> bool:
        changed = False
        by_key = {t["task_key"]: t for t in run["tasks"]}
        for task in run["tasks"]:
            if task["life"] != "PENDING" or task.get("ready"):
                continue
            deps = [by_key[d["task_key"]] for d in task["spec"].get("depends_on") or [] if d["task_key"] in by_key]
            if any(states.is_active(d) for d in deps):
                continue
            changed = True
            verdict = self._run_if(task["spec"].get("run_if", "ALL_SUCCESS"), [d.get("result") for d in deps])
            if verdict is None:
                task["ready"] = True
                task["message"] = "Waiting for an executor slot"
            else:
                result, message = verdict
                states.set_state(task, "TERMINATED", result, message)
                task["start_time"] = task["end_time"] = now_ms()
        return changed

    @staticmethod
    def _run_if(rule: str, results: list[str | None]) -> tuple[str, str] | None:
        """None when the task should run, else the result it ends with instead."""
        if not results:
            return None
        ok = [r in states.SUCCEEDED for r in results]
        failed = [r in states.FAILED for r in results]
        canceled = [r in states.CANCELED for r in results]
        decide = {
            "ALL_SUCCESS": all(ok),
            "AT_LEAST_ONE_SUCCESS": any(ok),
            "NONE_FAILED": not any(failed) and not any(canceled) and any(r != "EXCLUDED" for r in results),
            "ALL_DONE": True,
            "AT_LEAST_ONE_FAILED": any(failed),
            "ALL_FAILED": all(failed),
        }[rule]
        if decide:
            return None
        if any(canceled):
            return "UPSTREAM_CANCELED", "An upstream task was canceled."
        if any(failed) and rule in ("ALL_SUCCESS", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS"):
            return "UPSTREAM_FAILED", "An upstream task failed."
        return "EXCLUDED", f"The run_if condition {rule} was not met."

    def _finish_run(self, run: dict[str, Any], now: int) -> None:
        tasks = run["tasks"]
        failed = [t for t in tasks if t.get("result") in states.FAILED]
        if not failed:
            result, message = "SUCCESS", ""
        else:
            upstream = {d["task_key"] for t in tasks for d in t["spec"].get("depends_on") or []}
            leaves = [t for t in tasks if t["task_key"] not in upstream]
            first = next((t for t in failed if t["result"] != "UPSTREAM_FAILED"), failed[0])
            if all(t.get("result") in (*states.SUCCEEDED, "EXCLUDED") for t in leaves):
                result = "SUCCESS_WITH_FAILURES"
                message = f"Task {first['task_key']} failed, but the run's leaf tasks succeeded."
            else:
                result = "FAILED"
                detail = first.get("error") or first.get("message") or "failed"
                message = (
                    f"Task {first['task_key']} failed with message: {detail}. "
                    "This caused all downstream tasks to get skipped."
                )
        states.set_state(run, "TERMINATED", result, message)
        if result == "FAILED" and len(tasks) > 1 and self.failed_multitask_internal_error:
            run["legacy_life"] = "INTERNAL_ERROR"  # the measured serverless variant (FIELD_NOTES)
        run["end_time"] = now
        self._close_repair(run)
        self._emit("run.finished", run)

    @staticmethod
    def _close_repair(run: dict[str, Any]) -> None:
        if run.get("repair_history"):
            item = run["repair_history"][-1]
            item["end_time"] = run["end_time"]
            item["snapshot"] = {
                "life": run["life"],
                "result": run.get("result"),
                "message": run.get("message", ""),
                "term": run.get("term"),
                "legacy_life": run.get("legacy_life"),
            }

    def _admit_and_launch(self, active: list[dict[str, Any]], now: int) -> None:
        free = self.slots - len(self.handles)
        admitted: dict[int, int] = {}
        for run in active:
            if run.get("job_id") is not None and run["life"] in ("PENDING", "RUNNING", "TERMINATING"):
                admitted[run["job_id"]] = admitted.get(run["job_id"], 0) + 1
        for run in active:
            ready = [t for t in run["tasks"] if t["life"] == "PENDING" and t.get("ready")]
            if run["life"] == "QUEUED":
                limit = run.get("max_concurrent_runs")
                if run.get("job_id") is not None and limit is not None and admitted.get(run["job_id"], 0) >= limit:
                    self._queue_reason(
                        run,
                        "MAX_CONCURRENT_RUNS_REACHED",
                        f"Waiting: the job's limit of {limit} concurrent runs is reached",
                    )
                    continue
                if free <= 0 and ready:
                    self._queue_reason(
                        run,
                        "ACTIVE_RUNS_LIMIT_REACHED",
                        f"Waiting for one of the workspace's {self.slots} executor slots",
                    )
                    continue
                states.set_state(run, "RUNNING")
                run["admitted_time"] = now
                run.pop("queue_reason", None)
                if run.get("job_id") is not None:
                    admitted[run["job_id"]] = admitted.get(run["job_id"], 0) + 1
                self._emit("run.started", run)
                self.jobs.save_run(run)
            for task in ready:
                if free <= 0:
                    break
                self._launch(run, task, now)
                free -= 1
                self.jobs.save_run(run)

    def _queue_reason(self, run: dict[str, Any], code: str, message: str) -> None:
        if tuple(run.get("queue_reason") or ()) != (code, message):
            run["queue_reason"] = (code, message)
            self.jobs.save_run(run)

    def _launch(self, run: dict[str, Any], task: dict[str, Any], now: int) -> None:
        task.pop("ready", None)
        task["start_time"] = now
        states.set_state(task, "RUNNING")
        self._emit_task("task.started", run, task)
        kind = next(t for t in TASK_TYPES if task["spec"].get(t) is not None)
        runner = RUNNERS.get(kind)
        try:
            if runner is None:
                raise TaskSetupError(f"Task type {kind} is not supported by the local workspace")
            self.handles[task["run_id"]] = runner(self, run, task)
        except TaskSetupError as err:
            self._finish_attempt(run, task, Outcome("FAILED", str(err), str(err), None), now)
        except OSError as err:
            self._finish_attempt(run, task, Outcome("FAILED", f"Could not start the task: {err}", str(err)), now)

    # ------------------------------------------------------------------ helpers used by models and runners
    def stop_run(self, run: dict[str, Any], result: str, message: str) -> None:
        """Cancel or time out a run: kill its processes, end unfinished tasks, end the run."""
        now = now_ms()
        for task in run["tasks"]:
            if not states.is_active(task):
                continue
            handle = self.handles.pop(task["run_id"], None)
            if handle is not None:
                handle.kill()
            self._revoke(task)
            was_running = task["life"] == "RUNNING"
            states.set_state(task, "TERMINATED", result if was_running else "CANCELED", message)
            task["end_time"] = now
            task.pop("ready", None)
            if not task["start_time"]:
                task["start_time"] = now
            if was_running:
                self._emit_task("task.finished", run, task)
        states.set_state(run, "TERMINATED", result, message)
        run.pop("queue_reason", None)
        run["end_time"] = now
        self._close_repair(run)
        self.jobs.save_run(run)
        self._emit("run.finished", run)
        self.wake()

    def task_env(self, run: dict[str, Any], task: dict[str, Any], workdir: Path) -> dict[str, str]:
        """The task's environment: the run-as principal's short-lived token, nothing of the server's own."""
        principal = self.identity.principal_for(run["run_as"]["kind"], run["run_as"]["id"])
        lifetime = (task["spec"].get("timeout_seconds") or run.get("timeout_seconds") or 86_400) + 600
        value, info = self.identity.create_token(
            principal, lifetime_seconds=lifetime, internal=True, comment=f"run {run['run_id']} task {task['task_key']}"
        )
        task["token_id"] = info["token_id"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
        env.update(
            {
                "DATABRICKS_HOST": self.jobs.public_url(),
                "DATABRICKS_TOKEN": value,
                "APEV_TASK_ERROR_FILE": str(workdir / "error.json"),
                "APEV_JOB_ID": str(run.get("job_id") or ""),
                "APEV_RUN_ID": str(run["run_id"]),
                "APEV_TASK_RUN_ID": str(task["run_id"]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _revoke(self, task: dict[str, Any]) -> None:
        token_id = task.pop("token_id", None)
        if token_id:
            self.identity.revoke_token(token_id)

    def _emit(self, event: str, run: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(event, run)
            except Exception:
                log.exception("run listener failed for %s", event)

    def _emit_task(self, event: str, run: dict[str, Any], task: dict[str, Any]) -> None:
        for listener in self.task_listeners:
            try:
                listener(event, run, task)
            except Exception:
                log.exception("task listener failed for %s", event)

    def output_of(self, task: dict[str, Any]) -> tuple[str, bool]:
        path = self.runs_dir / str(task["run_id"]) / "stdout"
        size = path.stat().st_size if path.exists() else 0
        return tail(path), size > LOG_LIMIT


def run_sql_task(ex: Executor, run: dict[str, Any], task: dict[str, Any]) -> Handle:
    """`sql_task` on the local SQL engine (imported here lazily: the SQL area imports this module)."""
    from apev_workspace.sql.task import run_sql_task as runner

    return runner(ex, run, task)


RUNNERS["sql_task"] = run_sql_task
