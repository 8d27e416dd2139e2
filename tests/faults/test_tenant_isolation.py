"""Tenant isolation as a property: whatever tenant B's token asks of tenant A's resources (reads, lists,
approvals, rejections, runs), through any mix of roles, B reads nothing of A's and changes nothing of A's.

Write-back (a process): A's insights held for approval; B's approve/reject/audit/list. Jobs (a process, on the
workspace): A's requests, runs and jobs; B's reads, run requests and job requests naming A. Afterwards A's
insights are still held, no change reached the MCP simulator, and A's jobs have the runs they had.
Hypothesis draws the operation, the roles, which resource and which tenant is the victim (short: 40 examples
per service in `make test`; long: 400).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_report import Report
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_procs import JWT_SECRET, JobRuns, Stand, Writeback, until

from apev_runtime.auth import mint_token
from apev_workspace.testing import running_workspace, upload

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ROLES = ["admin", "engineer", "analyst", "agent"]  # the runtime's roles: a token with others is refused outright
roles_st = st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True)


def token(tenant: str, roles: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(JWT_SECRET, tenant_id=tenant, roles=roles)}"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-iso"), executor_slots=2) as ws:
        upload(ws.client(), f"{JobRuns.tasks}/ok.py", "print('fine')")
        yield ws


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, workspace: Any, mcp_sim: Any, alert_sinks: Any,
    service_logs: list[str],
) -> AsyncIterator[Stand]:  # fmt: skip
    s = Stand(kafka_bootstrap, pg_url, tmp_path, workspace, mcp_sim, alert_sinks, service_logs)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _held(base: str, tenant: str) -> set[str]:
    r = httpx.get(f"{base}/api/v1/writeback/insights", params={"state": "held"}, headers=token(tenant, ["admin"]))
    r.raise_for_status()
    return {i["insight_id"] for i in r.json()["insights"]}


def writeback_property(base: str, tenants: list[str], insights: dict[str, list[str]], examples: int) -> int:
    tried = 0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        victim=st.sampled_from([0, 1]),
        op=st.sampled_from(["approve", "reject", "audit", "get", "list"]),
        roles=roles_st,
        which=st.integers(0, 2),
        state=st.sampled_from(["held", "all", "applied", "rejected"]),
    )
    def check(victim: int, op: str, roles: list[str], which: int, state: str) -> None:
        nonlocal tried
        tried += 1
        owner, attacker = tenants[victim], tenants[1 - victim]
        insight = insights[owner][which]
        h = token(attacker, roles)
        url = f"{base}/api/v1/writeback/insights"
        if op == "list":
            r = httpx.get(url, params={"state": state}, headers=h)
            assert r.status_code in (200, 403), r.text
            if r.status_code == 200:
                seen = {i["insight_id"] for i in r.json()["insights"]}
                assert not seen & set(insights[owner]), f"{attacker} listed {owner}'s insights"
            return
        if op in ("approve", "reject"):
            r = httpx.post(f"{url}/{insight}/{op}", headers=h)
        else:
            r = httpx.get(f"{url}/{insight}" + ("/audit" if op == "audit" else ""), headers=h)
        assert r.status_code in (403, 404), f"{attacker} {op} {owner}'s {insight}: {r.status_code} {r.text[:200]}"
        assert insight not in r.text or r.status_code == 404  # a 404 may repeat the id asked for, nothing else

    check()
    return tried


def jobs_property(
    base: str, tenants: list[str], owned: dict[str, list[dict[str, Any]]], examples: int
) -> dict[str, int]:
    """Every read or write by the attacker naming the owner's resource is 403 (the resource exists: a 404 would
    mean a wrong path, which once made this property vacuous); the owner's own reads answer 200 (the control)."""
    seen = {"tried": 0, "owner_reads": 0}
    api = f"{base}/api/v1/databricks"

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        victim=st.sampled_from([0, 1]),
        op=st.sampled_from(["request", "run", "runs", "run_now", "post_job", "post_job_run", "recent"]),
        roles=roles_st,
        which=st.integers(0, 1),
    )
    def check(victim: int, op: str, roles: list[str], which: int) -> None:
        seen["tried"] += 1
        owner, attacker = tenants[victim], tenants[1 - victim]
        res = owned[owner][which]
        h = token(attacker, roles)
        reads = {
            "request": f"{api}/requests/{res['request_id']}",
            "run": f"{api}/runs/{res['run_id']}",
            "runs": f"{api}/jobs/{res['job_id']}/runs",
        }
        if op == "recent":  # the attacker's own list of runs: none of the owner's
            r = httpx.get(f"{api}/runs", params={"limit": 100}, headers=h)
            assert r.status_code == 200, r.text
            theirs = {str(x["run_id"]) for x in r.json()["runs"]}
            assert not theirs & {str(o["run_id"]) for o in owned[owner]}, f"{attacker} listed {owner}'s runs"
            return
        if op in reads:
            r = httpx.get(reads[op], headers=h)
            mine = httpx.get(reads[op], headers=token(owner, roles))
            assert mine.status_code == 200, f"{owner}'s own {op}: {mine.status_code} {mine.text[:200]}"
            seen["owner_reads"] += 1
        elif op == "run_now":
            r = httpx.post(f"{api}/jobs/{res['job_id']}/run", json={"job_parameters": {}}, headers=h)
        elif op == "post_job":  # a request naming the owner's tenant and the owner's job key
            body = {"tenant_id": owner, "kind": "adhoc", "key": res["key"], "action": {"type": "run"}}
            r = httpx.post(f"{api}/jobs", json=body, headers=h)
        else:  # a spec naming the owner's tenant: a job written under the owner's name
            body = {
                "tenant_id": owner,
                "kind": "adhoc",
                "key": "intruder",
                "action": {"type": "run"},
                "job": {"tasks": [{"task_key": "t", "python_task": {"python_file": f"{JobRuns.tasks}/ok.py"}}]},
            }
            r = httpx.post(f"{api}/jobs", json=body, headers=h)  # fmt: skip
        assert r.status_code == 403, f"{attacker} {op} on {owner}'s {res}: {r.status_code} {r.text[:200]}"
        assert res["job_name"] not in r.text

    check()
    return seen


@pytest.fixture
def examples() -> int:
    import os

    return 400 if os.environ.get("APEV_FAULTS_LONG") == "1" else 40


@pytest.mark.faults
@pytest.mark.timeout(900)
async def test_writeback_no_tenant_reads_or_decides_anothers_insights(
    stand: Stand, report: Report, examples: int
) -> None:
    started = time.monotonic()
    target = Writeback(tenants=2)
    await target.prepare(stand)
    insights: dict[str, list[str]] = {t: [] for t in target.tenants}
    for i in range(6):  # three held insights per tenant (confidence under the policy's threshold)
        key, event = target.event(stand, i)
        event = event.model_copy(update={"data": event.data.model_copy(update={"confidence": 0.3})})
        insights[event.tenantid].append(key)
        await stand.send(event)
    assert stand.producer is not None
    await stand.producer.flush()
    replica = stand.replica(target)
    try:
        await replica.start()
        base = f"http://127.0.0.1:{replica.port}"

        async def all_held() -> bool:
            held = [await asyncio.to_thread(_held, base, t) for t in target.tenants]
            return all(set(insights[t]) <= h for t, h in zip(target.tenants, held, strict=True))

        await until(all_held, timeout=180, what="the six insights held for approval")
        tried = await asyncio.to_thread(writeback_property, base, target.tenants, insights, examples)
        await asyncio.sleep(1)  # a decision taken in the background would show now
        still = [await asyncio.to_thread(_held, base, t) for t in target.tenants]
    finally:
        await replica.stop()
    changed = [i for t, h in zip(target.tenants, still, strict=True) for i in insights[t] if i not in h]
    applied = await target.effects(stand)
    report.record(
        "tenant_isolation_writeback",
        tried=tried,
        lost=len(changed),
        duplicated=sum(applied.values()),
        seconds=time.monotonic() - started,
        note="lost: another tenant's insight no longer held; duplicated: changes that reached MCP",
    )
    assert not changed, changed
    assert not applied, applied


@pytest.mark.faults
@pytest.mark.timeout(900)
async def test_jobs_no_tenant_reads_or_runs_anothers_jobs(stand: Stand, report: Report, examples: int) -> None:
    started = time.monotonic()
    tenants = ["iso-a", "iso-b"]
    requests: dict[str, list[tuple[str, str]]] = {t: [] for t in tenants}
    for t in tenants:
        target = JobRuns()
        target.tenant = t
        for i in range(2):
            name, event = target.event(stand, i)
            requests[t].append((event.id, name))
            await stand.send(event)
    assert stand.producer is not None
    await stand.producer.flush()
    replica = stand.replica(JobRuns())
    try:
        await replica.start()
        base = f"http://127.0.0.1:{replica.port}"
        owned: dict[str, list[dict[str, Any]]] = {t: [] for t in tenants}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for t in tenants:
                for request_id, name in requests[t]:
                    body: dict[str, Any] = {}

                    async def done(rid: str = request_id, owner: str = t) -> bool:
                        nonlocal body
                        r = await http.get(f"/api/v1/databricks/requests/{rid}", headers=token(owner, ["engineer"]))
                        body = r.json() if r.status_code == 200 else {}
                        return bool(body.get("state") == "done" and body.get("run_id"))

                    await until(done, timeout=180, what=f"{t}'s request {request_id}")
                    owned[t].append({"request_id": request_id, "run_id": body["run_id"], "job_id": body["job_id"],
                                     "job_name": name, "key": name.rsplit(":", 1)[1]})  # fmt: skip
        w = stand.workspace.client()

        def runs_per_job() -> dict[str, int]:
            return {
                res["job_name"]: len(list(w.jobs.list_runs(job_id=int(res["job_id"]))))
                for t in tenants
                for res in owned[t]
            }

        before = await asyncio.to_thread(runs_per_job)
        seen = await asyncio.to_thread(jobs_property, base, tenants, owned, examples)
        await asyncio.sleep(2)  # a run request that slipped through would have been consumed now
        after = await asyncio.to_thread(runs_per_job)
        names = await asyncio.to_thread(lambda: [j.settings.name for j in w.jobs.list() if j.settings])
    finally:
        await replica.stop()
    intruders = [n for n in names if n and "intruder" in n]
    report.record(
        "tenant_isolation_jobs",
        tried=seen["tried"],
        owner_reads=seen["owner_reads"],
        duplicated=sum(after[k] - before[k] for k in before) + len(intruders),
        seconds=time.monotonic() - started,
        note="duplicated: runs or jobs another tenant's token made",
    )
    assert after == before, (before, after)
    assert not intruders, intruders
    assert seen["owner_reads"] > 0, seen  # the paths were right: the owner read its own resources
