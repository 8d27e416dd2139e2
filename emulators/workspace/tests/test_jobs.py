"""Jobs API 2.2 against the local workspace, through databricks-sdk, with real task processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound
from databricks.sdk.service import jobs

from apev_workspace.testing import RunningWorkspace, py_task, running_workspace, upload, wait_run

STEP = """
import sys, time
name, log = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(name + "\\n")
print("step", name, "args", sys.argv[3:])
"""


def test_three_task_dag_runs_real_python_in_order(w: WorkspaceClient, tmp_path: Path) -> None:
    path = upload(w, "/Shared/dag/step.py", STEP)
    log = tmp_path / "order.log"
    job = w.jobs.create(
        name="dag",
        parameters=[jobs.JobParameterDefinition(name="tenant", default="t0")],
        tasks=[
            py_task("extract", path, "extract", str(log), "{{job.parameters.tenant}}", "{{job.id}}"),
            py_task(
                "transform", path, "transform", str(log), "{{task.name}}", "{{job.run_id}}", depends_on=("extract",)
            ),
            py_task("load", path, "load", str(log), "{{job.start_time.iso_date}}", depends_on=("transform",)),
        ],
    )
    started = w.jobs.run_now(job.job_id, job_parameters={"tenant": "acme"})
    run = wait_run(w, started.run_id)

    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS
    assert log.read_text().split() == ["extract", "transform", "load"]
    by_key = {t.task_key: t for t in run.tasks}
    assert by_key["transform"].start_time >= by_key["extract"].end_time
    assert by_key["load"].start_time >= by_key["transform"].end_time
    assert run.job_parameters[0].name == "tenant" and run.job_parameters[0].value == "acme"
    assert str(run.run_id) in run.run_page_url and run.end_time >= run.start_time > 0
    iso_date = __import__("datetime").datetime.fromtimestamp(run.start_time / 1000, tz=__import__("datetime").UTC)
    outputs = {k: w.jobs.get_run_output(t.run_id).logs for k, t in by_key.items()}
    assert f"step extract args ['acme', '{job.job_id}']" in outputs["extract"]
    assert f"step transform args ['transform', '{run.run_id}']" in outputs["transform"]
    assert f"step load args ['{iso_date.date().isoformat()}']" in outputs["load"]
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        w.jobs.get_run_output(run.run_id)


def test_run_now_with_one_idempotency_token_gives_one_run(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    path = upload(w, "/Shared/idem/ok.py", "print('ok')")
    job = w.jobs.create(name="idem", max_concurrent_runs=10, tasks=[py_task("t", path)])
    first = w.jobs.run_now(job.job_id, idempotency_token="event-123")
    second = w.jobs.run_now(job.job_id, idempotency_token="event-123")
    assert first.run_id == second.run_id
    wait_run(w, first.run_id)
    # bound forever: even after the run ended, the token still names it
    assert w.jobs.run_now(job.job_id, idempotency_token="event-123").run_id == first.run_id
    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [first.run_id]
    with pytest.raises(InvalidParameterValue, match="64"):
        w.jobs.run_now(job.job_id, idempotency_token="x" * 65)


def test_lost_response_on_run_now_then_sdk_retry_gives_one_run(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    path = upload(w, "/Shared/idem/ok.py", "print('ok')")
    job = w.jobs.create(name="lost", max_concurrent_runs=10, tasks=[py_task("t", path)])
    ws.reset_counters()
    ws.add_fault(method="POST", path="/api/2.*/jobs/run-now", action="lost_response", count=1)

    run = w.jobs.run_now(job.job_id, idempotency_token="lost-1")

    assert ws.counters("/api/2.2/jobs/run-now") == {"POST /api/2.2/jobs/run-now": 2}  # the SDK retried
    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [run.run_id]

    # the same fault without a token really applies the request twice: two runs, the bug tokens prevent
    ws.add_fault(method="POST", path="/api/2.*/jobs/run-now", action="lost_response", count=1)
    w.jobs.run_now(job.job_id)
    assert len(list(w.jobs.list_runs(job_id=job.job_id))) == 3


def test_failed_task_fails_run_and_repair_reruns_only_it(w: WorkspaceClient, tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    ok = upload(w, "/Shared/repair/a.py", STEP)
    bad = upload(w, "/Shared/repair/b.py", "raise ValueError('bad input row 7')")
    job = w.jobs.create(
        name="repair",
        tasks=[
            py_task("a", ok, "a", str(log)),
            py_task("b", bad, depends_on=("a",)),
            py_task("c", ok, "c", str(log), depends_on=("b",)),
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)

    assert run.state.result_state == jobs.RunResultState.FAILED
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR
    assert run.status.termination_details.type == jobs.TerminationTypeType.CLIENT_ERROR
    assert "bad input row 7" in run.status.termination_details.message
    tasks = {t.task_key: t for t in run.tasks}
    assert tasks["c"].state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    output = w.jobs.get_run_output(tasks["b"].run_id)
    assert output.error == "ValueError: bad input row 7"
    assert "Traceback" in output.error_trace and "b.py" in output.error_trace

    upload(w, "/Shared/repair/b.py", "print('fixed')")
    w.jobs.repair_run(run.run_id, rerun_tasks=["b"])
    repaired = wait_run(w, run.run_id)
    after = {t.task_key: t for t in repaired.tasks}
    assert after["a"].run_id == tasks["a"].run_id and after["a"].start_time == tasks["a"].start_time
    assert after["b"].run_id != tasks["b"].run_id
    assert after["b"].state.result_state == jobs.RunResultState.SUCCESS
    assert after["c"].run_id == tasks["c"].run_id  # not rerun: only what was asked
    assert log.read_text().split() == ["a"]
    assert [h.type for h in repaired.repair_history] == [
        jobs.RepairHistoryItemType.ORIGINAL,
        jobs.RepairHistoryItemType.REPAIR,
    ]
    assert repaired.repair_history[0].state.result_state == jobs.RunResultState.FAILED
    with pytest.raises(InvalidParameterValue, match="latest_repair_id"):
        w.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True)
    w.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True, latest_repair_id=repaired.repair_history[1].id)
    final = wait_run(w, run.run_id)
    assert final.state.result_state == jobs.RunResultState.SUCCESS
    assert log.read_text().split() == ["a", "c"]


def test_failed_multitask_run_can_show_internal_error_variant(tmp_path: Path) -> None:
    with running_workspace(tmp_path / "ws", failed_multitask_internal_error=True) as ws:
        w = ws.client()
        ok = upload(w, "/Shared/v/ok.py", "print(1)")
        bad = upload(w, "/Shared/v/bad.py", "import sys; sys.exit(3)")
        job = w.jobs.create(name="variant", tasks=[py_task("a", ok), py_task("b", bad, depends_on=("a",))])
        run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
        assert run.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
        assert run.state.result_state == jobs.RunResultState.FAILED
        assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
        assert run.status.termination_details.code == jobs.TerminationCodeCode.RUN_EXECUTION_ERROR


def test_retries_until_success(w: WorkspaceClient, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    code = f"""
from pathlib import Path
m = Path({str(marker)!r})
n = int(m.read_text()) if m.exists() else 0
m.write_text(str(n + 1))
if n < 2:
    raise RuntimeError(f"flaky attempt {{n}}")
print("succeeded on attempt", n)
"""
    path = upload(w, "/Shared/retry/flaky.py", code)
    job = w.jobs.create(name="retry", tasks=[py_task("t", path, max_retries=3, min_retry_interval_millis=100)])
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert run.tasks[0].attempt_number == 2
    assert marker.read_text() == "3"
    assert "succeeded on attempt 2" in w.jobs.get_run_output(run.tasks[0].run_id).logs


def test_run_if_all_done_runs_after_failure(w: WorkspaceClient) -> None:
    bad = upload(w, "/Shared/runif/bad.py", "raise SystemExit(1)")
    ok = upload(w, "/Shared/runif/ok.py", "print('cleanup')")
    job = w.jobs.create(
        name="runif",
        tasks=[
            py_task("work", bad),
            py_task("cleanup", ok, depends_on=("work",), run_if=jobs.RunIf.ALL_DONE),
            py_task("publish", ok, depends_on=("work",)),
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    tasks = {t.task_key: t.state.result_state for t in run.tasks}
    assert tasks == {
        "work": jobs.RunResultState.FAILED,
        "cleanup": jobs.RunResultState.SUCCESS,
        "publish": jobs.RunResultState.UPSTREAM_FAILED,
    }
    assert run.state.result_state == jobs.RunResultState.FAILED


def test_jobs_crud_list_paging_and_name_filter(w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/crud/ok.py", "print(1)")
    ids = [w.jobs.create(name=f"Job-{i}", tasks=[py_task("t", path)]).job_id for i in range(5)]
    page = w.jobs._api.do("GET", "/api/2.2/jobs/list", query={"limit": 2})
    assert len(page["jobs"]) == 2 and page["has_more"] is True and "tasks" not in page["jobs"][0]["settings"]
    assert sorted(j.job_id for j in w.jobs.list(limit=2)) == sorted(ids)
    named = list(w.jobs.list(name="job-3", expand_tasks=True))
    assert [j.job_id for j in named] == [ids[3]] and named[0].settings.tasks[0].task_key == "t"

    w.jobs.update(ids[0], new_settings=jobs.JobSettings(max_concurrent_runs=5, tags={"ap_kind": "ingest"}))
    got = w.jobs.get(ids[0])
    assert got.settings.max_concurrent_runs == 5 and got.settings.tags == {"ap_kind": "ingest"}
    assert got.settings.name == "Job-0" and got.creator_user_name == "admin@apev.local"
    w.jobs.reset(ids[0], new_settings=jobs.JobSettings(name="renamed", tasks=[py_task("u", path)]))
    got = w.jobs.get(ids[0])
    assert got.settings.name == "renamed" and got.settings.max_concurrent_runs == 1
    w.jobs.delete(ids[0])
    with pytest.raises(NotFound):
        w.jobs.get(ids[0])
    with pytest.raises(InvalidParameterValue, match="depends on"):
        w.jobs.create(name="bad", tasks=[py_task("t", path, depends_on=("missing",))])
    with pytest.raises(InvalidParameterValue, match="not defined"):
        w.jobs.run_now(ids[1], job_parameters={"nope": "1"})


def test_submit_run_with_idempotency_token(w: WorkspaceClient) -> None:
    path = upload(w, "/Shared/submit/ok.py", "print('submitted')")
    first = w.jobs.submit(
        run_name="one-off",
        tasks=[jobs.SubmitTask(task_key="t", spark_python_task=jobs.SparkPythonTask(python_file=path))],
        idempotency_token="s-1",
    )
    again = w.jobs.submit(
        run_name="one-off",
        tasks=[jobs.SubmitTask(task_key="t", spark_python_task=jobs.SparkPythonTask(python_file=path))],
        idempotency_token="s-1",
    )
    assert first.run_id == again.run_id
    run = wait_run(w, first.run_id)
    assert run.run_type == jobs.RunType.SUBMIT_RUN and run.state.result_state == jobs.RunResultState.SUCCESS


def test_only_subset_list_filters_2_1_paths_and_delete(w: WorkspaceClient, tmp_path: Path) -> None:
    log = tmp_path / "only.log"
    path = upload(w, "/Shared/only/step.py", STEP)
    job = w.jobs.create(
        name="only",
        max_concurrent_runs=5,
        tasks=[
            py_task("a", path, "a", str(log)),
            py_task("b", path, "b", str(log), depends_on=("a",)),
            py_task("c", path, "c", str(log), depends_on=("b",)),
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id, only=["b", "c"]).run_id)
    assert [t.task_key for t in run.tasks] == ["b", "c"]
    assert log.read_text().split() == ["b", "c"]
    second = wait_run(w, w.jobs.run_now(job.job_id, only=["a"]).run_id)

    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id, start_time_from=second.start_time)] == [second.run_id]
    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id, start_time_to=run.start_time)] == [run.run_id]
    legacy = w.api_client.do("GET", "/api/2.1/jobs/runs/list", query={"job_id": job.job_id, "expand_tasks": "true"})
    assert [r["run_id"] for r in legacy["runs"]] == [second.run_id, run.run_id]
    assert legacy["runs"][0]["tasks"][0]["task_key"] == "a" and legacy["has_more"] is False
    with pytest.raises(InvalidParameterValue):
        list(w.jobs.list_runs(active_only=True, completed_only=True))
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"limit": 26})

    w.jobs.delete_run(run.run_id)
    with pytest.raises(NotFound):
        w.jobs.get_run(run.run_id)
    task_view = w.jobs.get_run(second.tasks[0].run_id)  # a task run id answers as a run
    assert task_view.tasks[0].task_key == "a"


def test_job_permissions_and_run_as(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    path = upload(w, "/Shared/perm/ok.py", "print(1)")
    job = w.jobs.create(name="admin-only", tasks=[py_task("t", path)])
    sp = w.service_principals.create(display_name="tenant_t2_pipeline")
    other = w.service_principals.create(display_name="tenant_t3_pipeline")
    token = w.token_management.create_obo_token(application_id=sp.application_id).token_value
    as_sp = ws.client(token=token)
    from databricks.sdk.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        as_sp.jobs.get(job.job_id)
    with pytest.raises(PermissionDenied):
        as_sp.jobs.run_now(job.job_id)
    assert list(as_sp.jobs.list()) == []
    with pytest.raises(PermissionDenied, match="run_as"):
        as_sp.jobs.create(
            name="x", run_as=jobs.JobRunAs(service_principal_name=other.application_id), tasks=[py_task("t", path)]
        )
    own = as_sp.jobs.create(name="mine", tasks=[py_task("t", path)])
    assert as_sp.jobs.get(own.job_id).run_as_user_name == sp.application_id
    shared = w.jobs.create(
        name="shared",
        tasks=[py_task("t", path)],
        access_control_list=[
            jobs.JobAccessControlRequest(
                service_principal_name=sp.application_id, permission_level=jobs.JobPermissionLevel.CAN_MANAGE_RUN
            )
        ],
    )
    run = wait_run(as_sp, as_sp.jobs.run_now(shared.job_id).run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    with pytest.raises(PermissionDenied):
        as_sp.jobs.delete(shared.job_id)


def test_task_imports_sibling_workspace_modules_and_setup_failures_are_clear(w: WorkspaceClient) -> None:
    upload(w, "/Shared/pkg/helpers/__init__.py", "")
    upload(w, "/Shared/pkg/helpers/fmt.py", "def shout(s):\n    return s.upper() + '!'\n")
    main = upload(w, "/Shared/pkg/main.py", "import sys\nfrom helpers.fmt import shout\nprint(shout(sys.argv[1]))")
    job = w.jobs.create(name="pkg", max_concurrent_runs=3, tasks=[py_task("main", main, "hello")])
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message
    assert "HELLO!" in w.jobs.get_run_output(run.tasks[0].run_id).logs

    missing = w.jobs.create(name="missing", tasks=[py_task("t", "/Shared/pkg/nope.py")])
    failed = wait_run(w, w.jobs.run_now(missing.job_id).run_id)
    assert failed.state.result_state == jobs.RunResultState.FAILED
    assert "Cannot read python_file /Shared/pkg/nope.py" in failed.state.state_message
    unsupported = w.jobs.create(name="rj", tasks=[jobs.Task(task_key="n", run_job_task=jobs.RunJobTask(job_id=1))])
    failed = wait_run(w, w.jobs.run_now(unsupported.job_id).run_id)
    assert "run_job_task is not supported by the local workspace" in failed.state.state_message
    bad_ref = w.jobs.create(name="ref", tasks=[py_task("t", main, "{{job.parameters.undeclared}}")])
    failed = wait_run(w, w.jobs.run_now(bad_ref.job_id).run_id)
    assert "Invalid dynamic value reference" in failed.state.state_message


def test_jobs_get_and_runs_get_page_arrays_of_more_than_100(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    path = upload(w, "/Shared/wide/ok.py", "pass")
    tasks = [py_task(f"t{i:03d}", path) for i in range(120)]
    job = w.jobs.create(name="wide", tasks=tasks, parameters=[jobs.JobParameterDefinition(name="p", default="1")])
    first = w.api_client.do("GET", "/api/2.2/jobs/get", query={"job_id": job.job_id})
    assert len(first["settings"]["tasks"]) == 100 and first["has_more"] is True
    got = w.jobs.get(job.job_id)  # the SDK follows next_page_token and merges the pages
    assert [t.task_key for t in got.settings.tasks] == [f"t{i:03d}" for i in range(120)]
    assert [p.name for p in got.settings.parameters] == ["p"]

    with running_workspace(ws.data_dir.parent / "wide", executor_slots=8) as wide:
        ww = wide.client()
        upload(ww, path, "pass")
        job = ww.jobs.create(name="wide", tasks=tasks[:105], max_concurrent_runs=1)
        run = wait_run(ww, ww.jobs.run_now(job.job_id).run_id, timeout=120)
        assert len(run.tasks) == 105 and len(run.job_parameters or []) == 0
        assert run.state.result_state == jobs.RunResultState.SUCCESS
