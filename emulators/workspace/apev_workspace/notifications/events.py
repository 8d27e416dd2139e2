"""Which webhook notifications a run's lifecycle sends, and their payload (Databricks' thin body).

Job level (`settings.webhook_notifications`): `on_start` when the run leaves the queue, `on_success` /
`on_failure` when it ends, `on_duration_warning_threshold_exceeded` once per run when it runs longer than its
`health` rule (`RUN_DURATION_SECONDS` `GREATER_THAN` value). Task retries never notify at job level.
Task level (`tasks[].webhook_notifications`): the same events per task attempt (retries included), with
`task.task_key` and `run.parent_run_id`; `run.run_id` is then the task run id.
Canceled runs count as failures unless `notification_settings.no_alert_for_canceled_runs`. The listeners run
under the workspace lock, so they only enqueue; `delivery.WebhookSender` does the sending.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from apev_workspace.jobs import states
from apev_workspace.jobs.models import now_ms

if TYPE_CHECKING:
    from apev_workspace.jobs.models import Jobs
    from apev_workspace.notifications.delivery import WebhookSender

log = logging.getLogger("apev_workspace.notifications")

ON_START, ON_SUCCESS, ON_FAILURE = "on_start", "on_success", "on_failure"
ON_DURATION = "on_duration_warning_threshold_exceeded"


def payload(event: str, workspace_id: str, run: dict[str, Any], task: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"event_type": f"jobs.{event}", "workspace_id": workspace_id}
    if task is None:
        body["run"] = {"run_id": run["run_id"]}
    else:
        body["run"] = {"run_id": task["run_id"], "parent_run_id": run["run_id"]}
    if run.get("job_id") is not None:
        body["job"] = {"job_id": run["job_id"], "name": run.get("run_name") or ""}
    if task is not None:
        body["task"] = {"task_key": task["task_key"]}
    return body


def duration_threshold(holder: dict[str, Any]) -> int | None:
    """Seconds of the `RUN_DURATION_SECONDS` `GREATER_THAN` rule in `holder['health']`, if any."""
    for rule in (holder.get("health") or {}).get("rules") or []:
        if rule.get("metric") == "RUN_DURATION_SECONDS" and rule.get("op") == "GREATER_THAN":
            return int(rule["value"])
    return None


class Notifier:
    def __init__(self, jobs: Jobs, sender: WebhookSender, workspace_id: str, lock: threading.RLock) -> None:
        self.jobs = jobs
        self.sender = sender
        self.workspace_id = workspace_id
        self._lock = lock
        self._warned: set[int] = set()  # run and task run ids whose duration warning went out
        self.enabled = True
        """Admin switch (`/__admin/notifications`): when off, nothing is sent (a lost-webhook scenario)."""
        self.suppressed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ listeners (under the lock)
    def on_run(self, event: str, run: dict[str, Any]) -> None:
        settings = self._settings(run)
        if settings is None:
            return
        if event == "run.started":
            self._send(settings.get("webhook_notifications"), ON_START, run)
        elif event == "run.finished":
            outcome = self._outcome(run, settings)
            if outcome is not None:
                self._send(settings.get("webhook_notifications"), outcome, run)

    def on_task(self, event: str, run: dict[str, Any], task: dict[str, Any]) -> None:
        spec = task["spec"]
        hooks = spec.get("webhook_notifications")
        if not hooks:
            return
        if event == "task.started":
            self._send(hooks, ON_START, run, task)
        elif event == "task.finished":
            outcome = self._outcome(task, self._settings(run) or {})
            if outcome is not None:
                self._send(hooks, outcome, run, task)

    def _settings(self, run: dict[str, Any]) -> dict[str, Any] | None:
        job = self.jobs.jobs.get(run.get("job_id") or -1)
        return None if job is None else job["settings"]

    @staticmethod
    def _outcome(obj: dict[str, Any], settings: dict[str, Any]) -> str | None:
        result = obj.get("result")
        if result in states.SUCCEEDED:
            return ON_SUCCESS
        quiet = settings.get("notification_settings") or {}
        if result in states.CANCELED and quiet.get("no_alert_for_canceled_runs"):
            return None
        if result == "MAXIMUM_CONCURRENT_RUNS_REACHED" and quiet.get("no_alert_for_skipped_runs"):
            return None
        if result in ("EXCLUDED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED"):
            return None  # a task that never ran sends nothing of its own
        return ON_FAILURE if result else None

    def _send(
        self, hooks: dict[str, Any] | None, event: str, run: dict[str, Any], task: dict[str, Any] | None = None
    ) -> None:
        for hook in (hooks or {}).get(event) or []:
            if hook.get("id") and not self.enabled:
                self.suppressed += 1
            elif hook.get("id"):
                self.sender.enqueue(str(hook["id"]), payload(event, self.workspace_id, run, task))

    # ------------------------------------------------------------------ duration warnings
    def check_durations(self, now: int | None = None) -> None:
        now = now or now_ms()
        with self._lock:
            for run in self.jobs.runs.values():
                if run["life"] not in ("RUNNING", "TERMINATING"):
                    continue
                settings = self._settings(run) or {}
                limit = duration_threshold(settings)
                if limit is not None and run["run_id"] not in self._warned and now - run["start_time"] > limit * 1000:
                    self._warned.add(run["run_id"])
                    self._send(settings.get("webhook_notifications"), ON_DURATION, run)
                for task in run["tasks"]:
                    spec = task["spec"]
                    limit = duration_threshold(spec)
                    if (
                        limit is not None
                        and task["life"] == "RUNNING"
                        and task["run_id"] not in self._warned
                        and now - task["start_time"] > limit * 1000
                    ):
                        self._warned.add(task["run_id"])
                        self._send(spec.get("webhook_notifications"), ON_DURATION, run, task)

    def start(self, interval: float = 0.25) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.check_durations()
                except Exception:
                    log.exception("duration check failed")

        self._thread = threading.Thread(target=loop, name="apev-workspace-duration-warnings", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
