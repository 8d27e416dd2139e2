"""Reconciler with and without notifications, 200 concurrent runs within 3 API calls each, 429s, tenants, webhooks."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest

from .conftest import HOOK_PASSWORD, Stack, counted, task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def _metric(stack: Stack, name: str) -> float:
    async with stack.http(None) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_without_notifications_the_reconciler_publishes_within_two_intervals(stack: Stack) -> None:
    w = stack.ws.client()
    stack.ws.set_notifications(False)
    try:
        events = [stack.request(job={"tasks": [task("t")]}, action={"type": "run"}) for _ in range(3)]
        await stack.send(*events)
        runs = [await stack.run_of(e.id) for e in events]
        for run_id in runs:
            done = (await stack.wait_finished(run_id, timeout=30))[0]
            end = w.jobs.get_run(int(run_id)).end_time / 1000
            seen = time.time()
            assert done.data.outcome == "success"
            assert seen - end <= 2 * stack.settings.reconcile_interval_seconds + 1.0, seen - end
    finally:
        stack.ws.set_notifications(True)


async def test_with_notifications_the_reconciler_finds_nothing_and_calls_stay_within_three_per_run(
    stack: Stack,
) -> None:
    recovered = await _metric(stack, "apev_jobs_reconciler_recovered_total")
    await asyncio.sleep(2.5)  # runs of earlier tests settle
    stack.ws.reset_counters()
    n = 200
    first = stack.request(job={"tasks": [task("t")], "max_concurrent_runs": 1000}, action={"type": "run"})
    events = [first] + [
        stack.request(
            key=first.data.key, job={"tasks": [task("t")], "max_concurrent_runs": 1000}, action={"type": "run"}
        )
        for _ in range(n - 1)
    ]
    started = time.monotonic()
    await stack.send(*events)
    runs = [await stack.run_of(e.id, timeout=120) for e in events]
    assert len(set(runs)) == n
    for run_id in runs:
        await stack.wait_finished(run_id, timeout=120)
    took = time.monotonic() - started
    calls = counted(stack.ws, "/api/")
    total = sum(calls.values())
    print(f"\n{n} runs in {took:.1f}s, {total} API calls ({total / n:.2f} per run): {calls}")
    assert total <= 3 * n, calls
    assert calls.get("POST /api/2.2/jobs/run-now") == n
    assert calls.get("GET /api/2.2/jobs/runs/get") == n  # one per run, from its notification
    assert await _metric(stack, "apev_jobs_reconciler_recovered_total") == recovered
    assert all(len(stack.finished_for(r)) == 1 for r in runs)


async def test_with_429_on_a_fifth_of_calls_one_run_per_request_none_lost(stack: Stack) -> None:
    w = stack.ws.client()
    n = 40
    first = stack.request(job={"tasks": [task("t")], "max_concurrent_runs": 1000}, action={"type": "run"})
    events = [first] + [
        stack.request(
            key=first.data.key, job={"tasks": [task("t")], "max_concurrent_runs": 1000}, action={"type": "run"}
        )
        for _ in range(n - 1)
    ]
    stack.ws.add_fault(path="/api/2.2/jobs/*", action="429", retry_after=1, ratio=0.2)
    try:
        await stack.send(*events)
        runs = [await stack.run_of(e.id, timeout=120) for e in events]
        for run_id in runs:
            await stack.wait_finished(run_id, timeout=120)
        fired = sum(r["fired"] for r in stack.ws.admin_http().get("/__admin/faults").json()["faults"])
    finally:
        stack.ws.clear_faults()
    assert fired > 0
    assert len(set(runs)) == n
    job_id = (await stack.request_row(first.id)).job_id
    assert len(list(w.jobs.list_runs(job_id=int(job_id)))) == n
    assert all(len(stack.finished_for(r)) == 1 for r in runs)


async def test_tenants_cannot_read_each_other_and_a_forged_webhook_gets_401(stack: Stack) -> None:
    async with stack.http("acme") as a, stack.http("other-tenant") as b:
        posted = await a.post(
            "/api/v1/databricks/jobs",
            json={"kind": "adhoc", "key": "api-1", "job": {"tasks": [task("t")]}, "action": {"type": "run"}},
        )
        assert posted.status_code == 202, posted.text
        request_id = posted.json()["request_id"]
        run_id = await stack.run_of(request_id)
        mine = await a.get(f"/api/v1/databricks/requests/{request_id}")
        assert mine.status_code == 200 and mine.json()["run_id"] == run_id
        assert (await b.get(f"/api/v1/databricks/requests/{request_id}")).status_code == 403
        assert (await b.get(f"/api/v1/databricks/runs/{run_id}")).status_code == 403
        job_id = mine.json()["job_id"]
        assert (await b.get(f"/api/v1/databricks/jobs/{job_id}/runs")).status_code == 403
        assert (await b.post(f"/api/v1/databricks/jobs/{job_id}/run", json={})).status_code == 403
        await stack.wait_finished(run_id)

        again = await a.post(f"/api/v1/databricks/jobs/{job_id}/run", json={"job_parameters": {}})
        assert again.status_code == 202
        second = await stack.run_of(again.json()["request_id"])
        assert second != run_id  # a new request is a new run, with its own token
        seen = (await a.get(f"/api/v1/databricks/requests/{again.json()['request_id']}")).json()
        assert seen["idempotency_token"] != mine.json()["idempotency_token"]
        await stack.wait_finished(second)
        page = (await a.get(f"/api/v1/databricks/jobs/{job_id}/runs", params={"limit": 1})).json()
        assert [r["run_id"] for r in page["runs"]] == [second] and page["total"] == 2
        rest = (
            await a.get(
                f"/api/v1/databricks/jobs/{job_id}/runs", params={"limit": 1, "page_token": page["next_page_token"]}
            )
        ).json()
        assert [r["run_id"] for r in rest["runs"]] == [run_id] and "next_page_token" not in rest
        run = (await a.get(f"/api/v1/databricks/runs/{run_id}")).json()
        assert [x["repair_attempt"] for x in run["attempts"]] == [0]

        bad = await a.post(
            "/api/v1/databricks/jobs", json={"kind": "adhoc", "key": "api-2", "job": {"tasks": [{"task_key": "x"}]}}
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"].startswith("job.tasks.0")
        assert (await httpx.AsyncClient(base_url=stack.base_url).get("/api/v1/databricks/runs/1")).status_code == 401
        assert "/api/v1/databricks/jobs" in (await a.get("/openapi.json")).json()["paths"]

    before = len(stack.finished)
    body = {
        "event_type": "jobs.on_success",
        "run": {"run_id": int(second)},
        "job": {"job_id": int(job_id), "name": "x"},
    }
    async with httpx.AsyncClient(base_url=stack.base_url) as anon:
        for auth in (None, "Basic " + base64.b64encode(b"apev-jobs:wrong").decode(), "Bearer x"):
            headers = {"Authorization": auth} if auth else {}
            assert (await anon.post("/webhooks/databricks", json=body, headers=headers)).status_code == 401
        good = "Basic " + base64.b64encode(f"apev-jobs:{HOOK_PASSWORD}".encode()).decode()
        answer = await anon.post("/webhooks/databricks", json=body, headers={"Authorization": good})
        assert answer.status_code == 200 and answer.json()["result"] == "already_published"  # no runs/get either
    await asyncio.sleep(1.0)
    assert len(stack.finished) == before
