"""9. Memory: resident set of each of the five services (each its own process, `python -m apev_<name>`, as
deploy/tests/test_live_metrics.py starts them) idle, then peak (VmHWM) under load carrying 1,000 tenants' state.

Load, published at once: run.finished over 1,000 tenants (monitor, ingest and serving consume it),
serving.latency.sampled over 1,000 tenants (monitor), insight.created over 1,000 tenants (writeback: tenants it
has no settings for, refused to the DLQ), job.requested over 100 tenants (jobs: creates a job each and runs it on
the local workspace). Then until every service's inbox stops growing. RSS from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from _common import Env, Progress, quiet_databricks_env, row
from _jobs_stack import SQL_FILE
from _monitor_stack import now, run_finished
from aiokafka import AIOKafkaProducer

from apev_contracts import LATENCY_BUCKET_BOUNDS_MS, InsightCreated, JobRequested, ServingLatencySampled
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_mcpsim.testing import running_mcp
from apev_stack.paths import repo_root
from apev_workspace.testing import running_workspace, upload

NAME = "memory"
TITLE = "resident memory of each service: idle, and peak under load with 1,000 tenants' state"


def _status(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def _load(tenants: int, n_runs: int, n_lat: int, n_ins: int, n_jobs: int, wh: str) -> list[CloudEvent[Any]]:
    end = now()
    events: list[CloudEvent[Any]] = []
    for i in range(n_runs):
        events.append(
            run_finished(
                f"mem-{i % tenants}",
                str(10_000 + i % (2 * tenants)),
                str(10**7 + i),
                "failure" if i % 7 == 0 else "success",
                end,
            )
        )
    buckets = [0] * len(LATENCY_BUCKET_BOUNDS_MS)
    buckets[3] = 10
    for i in range(n_lat):
        t = f"mem-{i % tenants}"
        data = ServingLatencySampled(
            tenant_id=t,
            endpoint_name=f"agent-{i % 2}",
            replica_id="r1",
            window_start=end - timedelta(seconds=10 * (i // tenants + 1)),
            window_end=end - timedelta(seconds=10 * (i // tenants)),
            count=10,
            sum_ms=500.0,
            buckets=buckets,
        )
        events.append(new_event(data, tenant_id=t, source="bench/memory"))
    for i in range(n_ins):
        t = f"mem-{i % tenants}"
        data = InsightCreated.model_validate(
            {
                "tenant_id": t,
                "insight_id": f"ins-{uuid.uuid4().hex[:12]}",
                "agent_id": "a",
                "target_system": "adp",
                "entity_type": "employees",
                "entity_id": "E00001",
                "changes": {"RISK_FLAG": "HIGH"},
                "reason": "bench",
                "confidence": 0.9,
            }
        )
        events.append(new_event(data, tenant_id=t, source="bench/memory"))
    for i in range(n_jobs):
        t = f"mem-{i % tenants}"
        data = JobRequested.model_validate(
            {
                "tenant_id": t,
                "kind": "adhoc",
                "key": f"m{i}",
                "action": {"type": "run"},
                "job": {"tasks": [{"task_key": "q", "sql_task": {"file": SQL_FILE, "warehouse_id": wh}}]},
            }
        )
        events.append(new_event(data, tenant_id=t, source="bench/memory"))
    return events


async def _inbox_counts(admin: str, prefix: str, names: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(admin.rsplit("/", 1)[0] + "/apev_bench")
    try:
        out = {}
        for name in names:
            try:
                out[name] = int(await conn.fetchval(f'SELECT count(*) FROM "{prefix.rstrip(".")}_{name}".apev_inbox'))  # noqa: S608
            except asyncpg.UndefinedTableError:
                out[name] = 0
        return out
    finally:
        await conn.close()


async def run(env: Env, quick: bool, progress: Progress) -> dict[str, Any]:
    sys.path.insert(0, str(repo_root() / "deploy" / "tests"))
    import test_live_metrics  # the same start-up as the memory test

    ready = test_live_metrics._until_ready
    test_live_metrics._until_ready = lambda http, svc: ready(http, svc, timeout=300)  # a loaded machine starts slowly
    live_services = test_live_metrics.live_services

    tenants = 50 if quick else 1000
    sizes = (200, 100, 50, 5) if quick else (3000, 2000, 1000, 100)
    pg = await env.ensure_database()
    folder = env.tmp / f"mem-{uuid.uuid4().hex[:6]}"
    with quiet_databricks_env(), running_workspace(folder / "ws") as ws, running_mcp() as mcp:
        w = ws.client()
        upload(w, SQL_FILE, "SELECT 1")
        wh = str(next(iter(w.warehouses.list())).id)
        progress(0.05, "starting the five services")
        async with live_services(
            env.bootstrap, pg, folder, ws.host, ws.admin_token, mcp.base_url, mcp.admin_key
        ) as running:
            idle = {name: _status(svc.process.pid) for name, svc in running.items()}
            prefix = _prefix_of(next(iter(running.values())).process.pid)
            events = _load(tenants, *sizes, wh)
            progress(0.2, f"{len(events)} events over {tenants} tenants")
            producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, enable_idempotence=True, linger_ms=10)
            await producer.start()
            try:
                for event in events:
                    record = encode(event)
                    await producer.send(prefix + record.topic, record.value, key=record.key, headers=record.headers)
                await producer.flush()
            finally:
                await producer.stop()
            last: dict[str, int] = {}
            stable_since = time.monotonic()
            deadline = time.monotonic() + (120 if quick else 420)
            peaks: dict[str, float] = {}
            while time.monotonic() < deadline:
                for name, svc in running.items():
                    peaks[name] = max(peaks.get(name, 0.0), _status(svc.process.pid).get("VmRSS", 0.0))
                counts = await _inbox_counts(env.pg_admin, prefix, list(running))
                if counts != last:
                    last, stable_since = counts, time.monotonic()
                elif sum(counts.values()) > 0 and time.monotonic() - stable_since > 8:
                    break  # consuming started and stopped
                progress(
                    0.2 + 0.7 * min(1.0, sum(counts.values()) / max(1, len(events) + sizes[0] * 2)),
                    f"consuming: {sum(counts.values())} inbox rows",
                )
                await asyncio.sleep(0.5)
            loaded = {name: _status(svc.process.pid) for name, svc in running.items()}
    progress(1.0, None)
    result = {
        name: {
            "idle_rss_mib": idle[name].get("VmRSS"),
            "peak_rss_mib": loaded[name].get("VmHWM"),
            "rss_after_mib": loaded[name].get("VmRSS"),
            "inbox_rows": last.get(name, 0),
        }
        for name in idle
    }
    return {
        "figures": {f"{k}_peak_rss_mib": v["peak_rss_mib"] for k, v in result.items()},
        "services": result,
        "load": {
            "tenants": tenants,
            "run_finished": sizes[0],
            "latency_samples": sizes[1],
            "insights": sizes[2],
            "job_requests": sizes[3],
        },
        "summary": [
            row(
                f"{name}: peak RSS under load, {tenants} tenants' state (idle {v['idle_rss_mib']} MiB)",
                v["peak_rss_mib"],
                baseline=v["idle_rss_mib"],
                ratio=(v["peak_rss_mib"] or 0) / (v["idle_rss_mib"] or 1),
                unit="MiB",
                note=""
                if name != "monitor"
                else "inbox rows after the load: " + ", ".join(f"{k} {x['inbox_rows']}" for k, x in result.items()),
            )
            for name, v in result.items()
        ],
    }


def _prefix_of(pid: int) -> str:
    """The topic prefix live_services gave the services, from one's environment."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    return env[b"KAFKA_TOPIC_PREFIX"].decode()
