"""Cancel, timeouts, queueing and the bounded executor, and what a restart does to runs."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from apev_workspace.testing import py_task, running_workspace, upload, wait_run

SLEEPER = """
import subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
Path(sys.argv[1]).write_text(f"{__import__('os').getpid()} {child.pid}")
time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _running(run: jobs.Run) -> bool:
    return run.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING


def _wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_cancel_kills_the_whole_process_tree(w: WorkspaceClient, tmp_path: Path) -> None:
    path = upload(w, "/Shared/cancel/sleep.py", SLEEPER)
    pids_file = tmp_path / "pids"
    job = w.jobs.create(name="sleep", tasks=[py_task("sleep", path, str(pids_file))])
    run_id = w.jobs.run_now(job.job_id).run_id
    pids = [int(p) for p in _wait_for(pids_file).split()]
    assert all(psutil.pid_exists(p) for p in pids)

    started = time.monotonic()
    w.jobs.cancel_run(run_id)
    run = wait_run(w, run_id)
    assert time.monotonic() - started < 10

    assert run.state.result_state == jobs.RunResultState.CANCELED
    assert run.state.user_cancelled_or_timedout is True
    assert run.status.termination_details.code == jobs.TerminationCodeCode.USER_CANCELED
    assert run.tasks[0].state.result_state == jobs.RunResultState.CANCELED
    assert all(_gone(pid) for pid in pids)


def test_job_timeout_ends_timedout(w: WorkspaceClient, tmp_path: Path) -> None:
    path = upload(w, "/Shared/timeout/sleep.py", SLEEPER)
    pids_file = tmp_path / "pids"
    job = w.jobs.create(name="timeout", timeout_seconds=2, tasks=[py_task("sleep", path, str(pids_file))])
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id, timeout=30)
    assert run.state.result_state == jobs.RunResultState.TIMEDOUT
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert 2000 <= run.end_time - run.start_time < 10_000
    assert run.tasks[0].state.result_state == jobs.RunResultState.TIMEDOUT
    assert all(_gone(int(pid)) for pid in pids_file.read_text().split())


def test_task_timeout_with_retry_on_timeout(w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/timeout/slow.py", "import time; time.sleep(30)")
    job = w.jobs.create(
        name="task-timeout",
        tasks=[
            py_task("slow", path, timeout_seconds=1, max_retries=1, retry_on_timeout=True),
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id, timeout=30)
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert run.tasks[0].attempt_number == 1
    assert run.tasks[0].state.result_state == jobs.RunResultState.TIMEDOUT


def test_max_concurrent_runs_queues_the_rest(w: WorkspaceClient, tmp_path: Path) -> None:
    path = upload(w, "/Shared/queue/sleep.py", SLEEPER)
    job = w.jobs.create(
        name="one-at-a-time", max_concurrent_runs=1, tasks=[py_task("sleep", path, str(tmp_path / "p"))]
    )
    first = w.jobs.run_now(job.job_id).run_id
    wait_run(w, first, until=_running)
    second = w.jobs.run_now(job.job_id).run_id
    queued = wait_run(w, second, until=lambda r: r.status.queue_details is not None)
    assert queued.state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    assert queued.status.state == jobs.RunLifecycleStateV2State.QUEUED
    assert queued.status.queue_details.code == jobs.QueueDetailsCodeCode.MAX_CONCURRENT_RUNS_REACHED
    w.jobs.update(job.job_id, new_settings=jobs.JobSettings(queue=jobs.QueueSettings(enabled=False)))
    skipped = w.jobs.get_run(w.jobs.run_now(job.job_id).run_id)
    assert skipped.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    assert skipped.state.result_state == jobs.RunResultState.MAXIMUM_CONCURRENT_RUNS_REACHED
    assert skipped.status.termination_details.code == jobs.TerminationCodeCode.MAX_CONCURRENT_RUNS_EXCEEDED
    w.jobs.cancel_all_runs(job_id=job.job_id)
    assert wait_run(w, second).state.result_state == jobs.RunResultState.CANCELED
    assert wait_run(w, first).state.result_state == jobs.RunResultState.CANCELED


def test_sixty_runs_through_four_slots_page_active_runs_exactly_once(tmp_path: Path) -> None:
    with running_workspace(tmp_path / "ws", executor_slots=4) as ws:
        w = ws.client()
        path = upload(w, "/Shared/many/tiny.py", "import time; time.sleep(0.3)")
        job = w.jobs.create(name="many", max_concurrent_runs=100, tasks=[py_task("t", path)])
        run_ids = [w.jobs.run_now(job.job_id).run_id for _ in range(60)]

        def queued_now() -> set[int]:  # white-box snapshot, only to judge the paging below
            with ws.workspace.lock:
                return {r["run_id"] for r in ws.workspace.jobs.runs.values() if r["life"] == "QUEUED"}

        before = queued_now()
        seen: list[int] = []
        states_seen: dict[int, str] = {}
        for run in w.jobs.list_runs(job_id=job.job_id, active_only=True, limit=10):
            seen.append(run.run_id)
            states_seen[run.run_id] = run.state.life_cycle_state.value
        always_active = before & queued_now()
        assert len(seen) == len(set(seen)), "a run appeared on two pages"
        assert set(seen) <= set(run_ids)
        assert always_active <= set(seen), "a run active during the whole listing was missed"
        assert len(seen) > 10, "paging was not exercised"
        assert "QUEUED" in states_seen.values()
        queued = w.jobs.get_run(next(r for r, s in states_seen.items() if s == "QUEUED"))
        assert queued.status.state == jobs.RunLifecycleStateV2State.QUEUED or queued.end_time > 0

        peak = 0
        deadline = time.monotonic() + 120
        while True:
            running = [
                r
                for r in w.jobs.list_runs(job_id=job.job_id, active_only=True, limit=25)
                if r.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
            ]
            peak = max(peak, len(running))
            assert len(running) <= 4
            if not any(True for _ in w.jobs.list_runs(job_id=job.job_id, active_only=True, limit=1)):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        done = list(w.jobs.list_runs(job_id=job.job_id, completed_only=True))
        assert sorted(r.run_id for r in done) == sorted(run_ids)
        assert all(r.state.result_state == jobs.RunResultState.SUCCESS for r in done)
        assert [r.run_id for r in done] == sorted(run_ids, reverse=True)  # newest first
        assert peak >= 2


def test_restart_keeps_state_and_ends_interrupted_runs(tmp_path: Path) -> None:
    data = tmp_path / "ws"
    pids_file = tmp_path / "pids"
    with running_workspace(data) as ws:
        w = ws.client()
        sp = w.service_principals.create(display_name="pipeline")
        obo = w.token_management.create_obo_token(application_id=sp.application_id, comment="pipeline")
        path = upload(w, "/Shared/restart/sleep.py", SLEEPER)
        ok = upload(w, "/Shared/restart/ok.py", "print(1)")
        job = w.jobs.create(name="restart", max_concurrent_runs=5, tasks=[py_task("sleep", path, str(pids_file))])
        quick = w.jobs.create(name="quick", tasks=[py_task("t", ok)])
        done = w.jobs.run_now(quick.job_id, idempotency_token="tok-done").run_id
        wait_run(w, done)
        interrupted = w.jobs.run_now(job.job_id, idempotency_token="tok-live").run_id
        wait_run(w, interrupted, until=_running)
        pids = [int(p) for p in _wait_for(pids_file).split()]

    with running_workspace(data) as ws:
        w = ws.client()
        assert w.jobs.get(job.job_id).settings.name == "restart"
        assert w.workspace.get_status(ok).path == ok
        run = wait_run(w, interrupted)
        assert run.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
        assert run.status.termination_details.code == jobs.TerminationCodeCode.INTERNAL_ERROR
        assert "restarted" in run.state.state_message
        assert all(_gone(pid) for pid in pids)
        assert w.jobs.run_now(quick.job_id, idempotency_token="tok-done").run_id == done
        assert w.jobs.run_now(job.job_id, idempotency_token="tok-live").run_id == interrupted
        assert ws.client(token=obo.token_value).current_user.me().user_name == sp.application_id
        later = w.jobs.run_now(quick.job_id).run_id
        assert later > interrupted
