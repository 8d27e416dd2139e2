"""`GET /api/v1/databricks/runs`: the token's tenant's recent runs, filtered by kind and result, each attempt with
the tasks, state message and run page its `run.finished` carried."""

from __future__ import annotations

import pytest

from .conftest import Stack, task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_recent_runs_list_tasks_and_errors_filters_and_tenants(stack: Stack) -> None:
    ok = stack.request("acme", job={"tasks": [task("t")]}, action={"type": "run"})
    bad = stack.request("acme", job={"tasks": [task("a"), task("b", "fail.py")]}, action={"type": "run"})
    other = stack.request("globex", job={"tasks": [task("t")]}, action={"type": "run"})
    await stack.send(ok, bad, other)
    runs = {e.id: await stack.run_of(e.id) for e in (ok, bad, other)}
    for run_id in runs.values():
        await stack.wait_finished(run_id)

    async with stack.http("acme") as http:
        listed = (await http.get("/api/v1/databricks/runs", params={"limit": 100})).json()["runs"]
        mine = {r["run_id"]: r for r in listed}
        assert runs[ok.id] in mine and runs[bad.id] in mine
        assert runs[other.id] not in mine  # another tenant's run is not listed
        failed = mine[runs[bad.id]]
        (attempt,) = failed["attempts"]
        assert attempt["outcome"] == "failure" and failed["result_state"] == "FAILED"
        tasks = {t["task_key"]: t["state"]["result_state"] for t in attempt["tasks"]}
        assert tasks == {"a": "SUCCESS", "b": "FAILED"}
        assert attempt["state_message"]  # the workspace's reason, as run.finished carried it
        assert attempt["run_page_url"] and runs[bad.id] in attempt["run_page_url"]
        assert attempt["run_finished"]["run_id"] == runs[bad.id]

        failures = (await http.get("/api/v1/databricks/runs", params={"result": "failure", "limit": 100})).json()
        assert runs[bad.id] in {r["run_id"] for r in failures["runs"]}
        assert runs[ok.id] not in {r["run_id"] for r in failures["runs"]}
        assert all(r["attempts"][-1]["outcome"] == "failure" for r in failures["runs"])
        by_kind = (await http.get("/api/v1/databricks/runs", params={"kind": "ingestion"})).json()
        assert by_kind["runs"] == []  # every run here is adhoc
        page = (await http.get("/api/v1/databricks/runs", params={"limit": 1})).json()
        assert len(page["runs"]) == 1 and page["next_page_token"]
        refused = await http.get("/api/v1/databricks/runs", params={"result": "bogus"})
        assert refused.status_code == 400 and "result" in refused.json()["detail"]
        one = (await http.get(f"/api/v1/databricks/runs/{runs[bad.id]}")).json()
        assert one["attempts"][0]["tasks"] == attempt["tasks"]
    async with stack.http(None) as http:
        assert (await http.get("/api/v1/databricks/runs")).status_code == 401
