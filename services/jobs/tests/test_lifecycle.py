"""The tenant lifecycle in the jobs service: a changed schedule resets the job once, `delete` leaves no job and
no scheduled run, `tenant.offboarded` cancels and deletes every job of that tenant and no other's."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from databricks.sdk.service import jobs as dbx

from apev_contracts import TenantOffboarded
from apev_contracts.envelope import new_event

from .conftest import Stack, counted, task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

NIGHTLY = {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC"}
EARLY = {"quartz_cron_expression": "0 30 5 * * ?", "timezone_id": "UTC"}


async def _settled(stack: Stack, request_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await stack.request_row(request_id)
        if row is not None and row.state in ("done", "failed"):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {request_id} not settled: {await stack.request_row(request_id)}")


def _jobs(stack: Stack, name: str) -> list[dbx.BaseJob]:
    return list(stack.ws.client().jobs.list(name=name))


async def _running(stack: Stack, run_id: str, timeout: float = 30) -> None:
    w = stack.ws.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = w.jobs.get_run(int(run_id)).state
        if state is not None and state.life_cycle_state == dbx.RunLifeCycleState.RUNNING:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} never ran")


async def test_a_new_schedule_resets_the_job_once_and_a_replay_writes_nothing(stack: Stack) -> None:
    key = "ds-" + uuid.uuid4().hex[:8]
    first = stack.request(kind="ingest", key=key, job={"tasks": [task("t")], "schedule": NIGHTLY})
    await stack.send(first)
    assert (await _settled(stack, first.id)).job_written == "created"
    stack.ws.reset_counters()
    updated = stack.request(kind="ingest", key=key, job={"tasks": [task("t")], "schedule": EARLY})
    await stack.send(updated, updated)  # delivered twice
    assert (await _settled(stack, updated.id)).job_written == "reset"
    await asyncio.sleep(1.0)
    assert counted(stack.ws).get("POST /api/2.2/jobs/reset") == 1
    assert "POST /api/2.2/jobs/create" not in counted(stack.ws)
    (job,) = _jobs(stack, first.data.job_name)
    got = stack.ws.client().jobs.get(int(job.job_id or 0)).settings
    assert got is not None and got.schedule is not None
    assert got.schedule.quartz_cron_expression == EARLY["quartz_cron_expression"]


async def test_delete_cancels_the_running_run_and_leaves_no_job_nor_schedule(stack: Stack) -> None:
    key = "ds-" + uuid.uuid4().hex[:8]
    made = stack.request(
        kind="ingest", key=key, job={"tasks": [task("t", "sleep.py", "30")], "schedule": NIGHTLY},
        action={"type": "run"},
    )  # fmt: skip
    await stack.send(made)
    run_id = await stack.run_of(made.id)
    await _running(stack, run_id)
    gone = stack.request(kind="ingest", key=key, action={"type": "delete"})
    await stack.send(gone)
    row = await _settled(stack, gone.id)
    assert (row.state, row.job_written) == ("done", "deleted"), row.error
    assert _jobs(stack, made.data.job_name) == []
    (finished,) = await stack.wait_finished(run_id)
    assert finished.data.outcome == "canceled"
    again = stack.request(kind="ingest", key=key, action={"type": "delete"})  # a second removal: nothing to do
    await stack.send(again)
    assert (await _settled(stack, again.id)).state == "done"


async def test_offboarding_deletes_every_job_of_the_tenant_and_another_tenants_run_goes_on(stack: Stack) -> None:
    leaving, staying = "leaving-" + uuid.uuid4().hex[:6], "staying-" + uuid.uuid4().hex[:6]
    theirs = [
        stack.request(leaving, kind="ingest", key="ds-1", job={"tasks": [task("t", "sleep.py", "30")],
                      "schedule": NIGHTLY}, action={"type": "run"}),
        stack.request(leaving, kind="agent-insights", key="agent-1", job={"tasks": [task("t")]}),
    ]  # fmt: skip
    other = stack.request(staying, key="long", job={"tasks": [task("t", "sleep.py", "4")]}, action={"type": "run"})
    await stack.send(*theirs, other)
    leaving_run = await stack.run_of(theirs[0].id)
    await _settled(stack, theirs[1].id)
    other_run = await stack.run_of(other.id)
    await _running(stack, leaving_run)
    await _running(stack, other_run)

    offboarded = new_event(TenantOffboarded(tenant_id=leaving), tenant_id=leaving, source="tests/jobs")
    await stack.send(offboarded)
    (cancelled,) = await stack.wait_finished(leaving_run)
    assert cancelled.data.outcome == "canceled"
    w = stack.ws.client()
    deadline = time.monotonic() + 30
    while any(((j.settings and j.settings.tags) or {}).get("ap_tenant_id") == leaving for j in w.jobs.list()):
        assert time.monotonic() < deadline, "the tenant's jobs are still there"
        await asyncio.sleep(0.1)
    (done,) = await stack.wait_finished(other_run)
    assert done.data.outcome == "success"
    assert len(_jobs(stack, other.data.job_name)) == 1
    await stack.send(offboarded)  # redelivered: nothing left to do, nothing of the other tenant touched
    await asyncio.sleep(1.0)
    assert len(_jobs(stack, other.data.job_name)) == 1
