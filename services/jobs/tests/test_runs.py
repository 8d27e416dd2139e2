"""job.requested -> one job, one run; run.finished exactly once per (run, repair attempt) for every ending."""

from __future__ import annotations

import asyncio

import pytest
from databricks.sdk.service import jobs as dbx

from apev_contracts.ids import run_finished_id
from apev_jobs.service import idempotency_token

from .conftest import Stack, counted, task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_request_makes_one_job_and_one_run_and_a_redelivery_keeps_it(stack: Stack) -> None:
    w = stack.ws.client()
    event = stack.request(
        job={"tasks": [task("t")], "parameters": [{"name": "day", "default": "x"}]},
        action={"type": "run", "job_parameters": {"day": "2026-01-02"}},
    )
    await stack.send(event)
    run_id = await stack.run_of(event.id)
    (done,) = await stack.wait_finished(run_id)
    jobs = list(w.jobs.list(name=event.data.job_name))
    assert len(jobs) == 1
    assert [r.run_id for r in w.jobs.list_runs(job_id=jobs[0].job_id)] == [int(run_id)]
    assert done.id == run_finished_id(run_id, 0)
    d = done.data
    assert (d.job_id, d.kind, d.key, d.request_id, d.outcome) == (
        str(jobs[0].job_id),
        "adhoc",
        event.data.key,
        event.id,
        "success",
    )
    assert d.job_parameters == {"day": "2026-01-02"}
    assert d.tags["ap_tenant_id"] == "acme" and d.tags["ap_kind"] == "adhoc"
    assert (d.state.life_cycle_state, d.state.result_state, d.status.state) == ("TERMINATED", "SUCCESS", "TERMINATED")
    assert [t.task_key for t in d.tasks] == ["t"] and d.tasks[0].state.result_state == "SUCCESS"
    assert d.run_page_url and run_id in d.run_page_url
    assert d.end_time >= d.start_time

    await stack.send(event)  # redelivered: the same request id
    await asyncio.sleep(1.5)
    assert [r.run_id for r in w.jobs.list_runs(job_id=jobs[0].job_id)] == [int(run_id)]
    assert len(stack.finished_for(run_id)) == 1
    row = await stack.request_row(event.id)
    assert (row.run_id, row.idempotency_token) == (run_id, idempotency_token(event.id))
    assert len(idempotency_token(event.id)) <= 64


async def test_changed_spec_resets_the_job_and_an_unchanged_one_writes_nothing(stack: Stack) -> None:
    w = stack.ws.client()
    first = stack.request(job={"tasks": [task("t")]})
    await stack.send(first)
    await _done(stack, first.id)
    assert (await stack.request_row(first.id)).job_written == "created"
    stack.ws.reset_counters()
    same = stack.request(key=first.data.key, job={"tasks": [task("t")]})
    await stack.send(same)
    await _done(stack, same.id)
    assert (await stack.request_row(same.id)).job_written == "unchanged"
    calls = counted(stack.ws, "/api/2.2/jobs")
    assert not [k for k in calls if k.startswith("POST")], calls  # no create, no reset

    changed = stack.request(key=first.data.key, job={"tasks": [task("t", "ok.py", "v2")]})
    await stack.send(changed)
    await _done(stack, changed.id)
    row = await stack.request_row(changed.id)
    assert (row.job_written, row.job_id) == ("reset", (await stack.request_row(first.id)).job_id)
    assert counted(stack.ws, "/api/2.2/jobs").get("POST /api/2.2/jobs/reset") == 1
    (job,) = list(w.jobs.list(name=first.data.job_name, expand_tasks=True))
    assert job.settings.tasks[0].spark_python_task.parameters == ["v2"]
    hooks = job.settings.webhook_notifications
    mine = stack.service._destination_id
    assert (
        [h.id for h in hooks.on_start] == [h.id for h in hooks.on_success] == [h.id for h in hooks.on_failure] == [mine]
    )


async def _done(stack: Stack, request_id: str) -> None:
    for _ in range(600):
        row = await stack.request_row(request_id)
        if row is not None and row.state in ("done", "failed"):
            assert row.state == "done", row.error
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {request_id} not done")


async def test_every_ending_publishes_once_with_its_state(stack: Stack) -> None:
    ok = stack.request(job={"tasks": [task("t")]}, action={"type": "run"})
    bad = stack.request(job={"tasks": [task("t", "fail.py")]}, action={"type": "run"})
    slow = stack.request(job={"tasks": [task("t", "sleep.py", "30")], "timeout_seconds": 1}, action={"type": "run"})
    long = stack.request(job={"tasks": [task("t", "sleep.py", "30")]}, action={"type": "run"})
    await stack.send(ok, bad, slow, long)
    runs = {e.id: await stack.run_of(e.id) for e in (ok, bad, slow, long)}
    cancel = stack.request(key=long.data.key, action={"type": "cancel", "run_id": runs[long.id]})
    await asyncio.sleep(0.5)
    await stack.send(cancel)
    outcomes = {}
    for e in (ok, bad, slow, long):
        (done,) = await stack.wait_finished(runs[e.id])
        outcomes[e.id] = (done.data.outcome, done.data.state.result_state)
    assert outcomes == {
        ok.id: ("success", "SUCCESS"),
        bad.id: ("failure", "FAILED"),
        slow.id: ("timeout", "TIMEDOUT"),
        long.id: ("canceled", "CANCELED"),
    }
    failed = stack.finished_for(runs[bad.id])[0].data
    assert failed.status.termination_details is not None and failed.status.termination_details.code
    await asyncio.sleep(2.5)  # webhooks, retries and two reconciler passes later: still once each
    assert all(len(stack.finished_for(r)) == 1 for r in runs.values())


async def test_skipped_run_is_finished(stack: Stack) -> None:
    spec = {"tasks": [task("t", "sleep.py", "3")], "max_concurrent_runs": 1, "queue": {"enabled": False}}
    first = stack.request(job=spec, action={"type": "run"})
    await stack.send(first)
    await stack.run_of(first.id)
    second = stack.request(key=first.data.key, job=spec, action={"type": "run"})
    await stack.send(second)
    skipped = await stack.run_of(second.id)
    (done,) = await stack.wait_finished(skipped)
    assert (done.data.state.life_cycle_state, done.data.outcome) == ("SKIPPED", "skipped")


async def test_repair_publishes_its_own_attempt(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    marker = str(tmp_path_factory.mktemp("marker") / "m")
    run_req = stack.request(job={"tasks": [task("a"), task("b", "fail_once.py", marker)]}, action={"type": "run"})
    await stack.send(run_req)
    run_id = await stack.run_of(run_req.id)
    (first,) = await stack.wait_finished(run_id)
    assert first.data.outcome == "failure" and first.data.repair_attempt == 0
    repair = stack.request(
        key=run_req.data.key, action={"type": "repair", "run_id": run_id, "rerun_all_failed_tasks": True}
    )
    await stack.send(repair)
    second = (await stack.wait_finished(run_id, count=2))[1]
    assert second.id == run_finished_id(run_id, 1)
    assert (second.data.repair_attempt, second.data.outcome) == (1, "success")
    assert {t.task_key: t.state.result_state for t in second.data.tasks} == {"a": "SUCCESS", "b": "SUCCESS"}
    await asyncio.sleep(1.5)
    assert len(stack.finished_for(run_id)) == 2


async def test_a_run_of_101_tasks_reports_all_101(stack: Stack) -> None:
    event = stack.request(job={"tasks": [task(f"t{i:03}") for i in range(101)]}, action={"type": "run"})
    await stack.send(event)
    run_id = await stack.run_of(event.id)
    (done,) = await stack.wait_finished(run_id, timeout=120)
    assert sorted(t.task_key for t in done.data.tasks) == [f"t{i:03}" for i in range(101)]
    assert all(t.state.result_state == "SUCCESS" for t in done.data.tasks)
    assert counted(stack.ws, "/api/2.2/jobs/runs/get")  # paged: see the SDK's get_run


async def test_two_replicas_publish_once(stack: Stack) -> None:
    import base64

    import httpx

    from .conftest import HOOK_PASSWORD, jobs_settings, serve_jobs

    settings = jobs_settings(stack.ws, stack.bootstrap, stack.pg_url, stack.prefix, stack.schema)
    w = stack.ws.client()
    async with serve_jobs(settings) as other:
        stack.ws.set_notifications(False)  # so that the notifications below are the first anyone sees
        try:
            event = stack.request(job={"tasks": [task("t")]}, action={"type": "run"})
            await stack.send(event)
            run_id = await stack.run_of(event.id)
            while w.jobs.get_run(int(run_id)).state.life_cycle_state != dbx.RunLifeCycleState.TERMINATED:
                await asyncio.sleep(0.05)
            body = {"event_type": "jobs.on_success", "run": {"run_id": int(run_id)}, "job": {"job_id": 1, "name": "x"}}
            auth = "Basic " + base64.b64encode(f"apev-jobs:{HOOK_PASSWORD}".encode()).decode()
            async with httpx.AsyncClient(timeout=30) as http:
                posts = [
                    http.post(f"{url}/webhooks/databricks", json=body, headers={"Authorization": auth})
                    for url in (stack.base_url, settings.public_url) * 3
                ]
                answers = await asyncio.gather(*posts, other.reconcile(), stack.service.reconcile())
        finally:
            stack.ws.set_notifications(True)
        results = [a.json()["result"] for a in answers[:6]]
        assert all(a.status_code == 200 for a in answers[:6])
        assert results.count("published") <= 1, results
        await stack.wait_finished(run_id)
        await asyncio.sleep(2.5)
        assert len(stack.finished_for(run_id)) == 1
