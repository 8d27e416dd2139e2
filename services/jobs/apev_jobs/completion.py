"""What a finished Databricks run becomes: the `run.finished` payload (§8 fields) from `runs/get`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from databricks.sdk.service import jobs as dbx

from apev_contracts import RunFinished
from apev_contracts.events.runs import RunState, RunStatus, TaskRun, TerminationDetails, run_outcome

# Every terminal legacy life cycle state counts (SKIPPED and INTERNAL_ERROR too: dagster#13668).
TERMINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})


def _value(enum: Any) -> str | None:
    return None if enum is None else str(getattr(enum, "value", enum))


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def is_terminal(run: dbx.Run | dbx.BaseRun) -> bool:
    life = _value(run.state.life_cycle_state) if run.state else None
    return life in TERMINAL


def repair_attempt(run: dbx.Run) -> int:
    """0 for the original run, n after its n-th repair (REPAIR items in `repair_history`, counted once each:
    the SDK concatenates the history of every page)."""
    repairs = {item.id for item in run.repair_history or [] if _value(item.type) == "REPAIR"}
    return len(repairs)


def _legacy(state: dbx.RunState | None) -> RunState:
    if state is None:
        return RunState(life_cycle_state="INTERNAL_ERROR", state_message="runs/get returned no state")
    return RunState(
        life_cycle_state=_value(state.life_cycle_state) or "INTERNAL_ERROR",
        result_state=_value(state.result_state),
        state_message=(state.state_message or "")[:4000],
    )


def _status(status: dbx.RunStatus | None, legacy: RunState) -> RunStatus:
    if status is None or status.state is None:
        return RunStatus(state="TERMINATED")
    details = status.termination_details
    return RunStatus(
        state=_value(status.state) or "TERMINATED",
        termination_details=TerminationDetails(
            code=_value(details.code) or "UNKNOWN",
            type=_value(details.type) or "UNKNOWN",
            message=(details.message or "")[:4000],
        )
        if details is not None and details.code is not None
        else None,
    )


def _tasks(run: dbx.Run) -> list[TaskRun]:
    """One entry per task key: its latest attempt (a repaired run lists earlier attempts too)."""
    latest: dict[str, dbx.RunTask] = {}
    for task in run.tasks or []:
        seen = latest.get(task.task_key)
        if seen is None or ((task.attempt_number or 0), (task.start_time or 0)) >= (
            (seen.attempt_number or 0),
            (seen.start_time or 0),
        ):
            latest[task.task_key] = task
    out = []
    for task in latest.values():
        legacy = _legacy(task.state)
        out.append(
            TaskRun(
                task_key=task.task_key,
                run_id=str(task.run_id) if task.run_id is not None else None,
                attempt_number=task.attempt_number or 0,
                state=legacy,
                status=_status(task.status, legacy) if task.status is not None else None,
                start_time=_time(task.start_time),
                end_time=_time(task.end_time),
            )
        )
    return out


def job_parameters(run: dbx.Run) -> dict[str, str]:
    params: dict[str, str] = {}
    for p in run.job_parameters or []:
        if p.name:
            params[p.name] = p.value if p.value is not None else (p.default or "")
    return params


@dataclass(frozen=True)
class Tracked:
    """What the service knows about a run beyond `runs/get`."""

    tenant_id: str
    job_id: str
    job_name: str
    kind: str
    key: str
    request_id: str | None
    tags: dict[str, str]
    timed_out: bool = False
    timeout_seconds: int = 0


def run_finished(run: dbx.Run, tracked: Tracked, attempt: int) -> RunFinished:
    legacy = _legacy(run.state)
    status = _status(run.status, legacy)
    if tracked.timed_out and legacy.result_state in ("CANCELED", None):
        # The service cancelled it for its own deadline (queue time included): report the timeout.
        legacy = RunState(
            life_cycle_state=legacy.life_cycle_state,
            result_state="TIMEDOUT",
            state_message=f"Timed out: not finished {tracked.timeout_seconds} s after it was requested "
            "(queue time included); cancelled by the jobs service",
        )
    start, end = run.start_time, run.end_time
    if attempt > 0:
        repairs = [item for item in run.repair_history or [] if _value(item.type) == "REPAIR"]
        if len(repairs) >= attempt:
            start = repairs[attempt - 1].start_time or start
            end = repairs[attempt - 1].end_time or end
    started = _time(start) or _time(end) or datetime.now(UTC)
    ended = _time(end) or started
    return RunFinished(
        tenant_id=tracked.tenant_id,
        job_id=tracked.job_id,
        run_id=str(run.run_id),
        repair_attempt=attempt,
        kind=tracked.kind,
        key=tracked.key,
        job_name=tracked.job_name,
        request_id=tracked.request_id,
        tags=tracked.tags,
        job_parameters=job_parameters(run),
        state=legacy,
        status=status,
        outcome=run_outcome(legacy.life_cycle_state, legacy.result_state),
        tasks=_tasks(run),
        start_time=started,
        end_time=max(ended, started),
        run_page_url=run.run_page_url,
    )
