"""3. Databricks API calls per run, and detection delay, at 10 / 100 / 1,000 runs in flight.

Same workload for each contender, one after the other in this run: N runs of one SQL job (`SELECT 1`) held
QUEUED by the workspace's executor (blocker runs occupy every slot until all N were submitted; then they are
cancelled and the N runs drain through the slots). Contenders:

- **jobs service**: N `job.requested` events; it calls `run-now` per run, `runs/get` once per run on its
  completion webhook, and its reconciler pages `runs/list?active_only=true` every interval.
- **polling baseline** (what Airflow's deferrable operator, Dagster and Prefect do): `run-now` per run, then
  `runs/get` per unfinished run every P seconds, P = 10 s and 30 s.

Time is compressed by COMPRESSION (runs here last seconds, not minutes): the reconciler's 30 s and the polls'
10 s / 30 s are divided by it, so calls per run are what they would be at real intervals with runs that long
times COMPRESSION. Calls come from the workspace's own counter (`/__admin/counters`), per endpoint; the bench's
own blocker calls are not counted. Detection delay: from the executor ending the run to `run.finished` read from
Kafka (service) or to the poll that saw it terminal (baseline); the baseline's is also given at real intervals.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import Env, Progress, distribution, row
from _jobs_stack import SLEEP_FILE, SQL_FILE, RunClock, jobs_stack, sql_job, wait_until, warehouse_id, workspace
from databricks.sdk.service import jobs as dbx

from apev_workspace.testing import RunningWorkspace

NAME = "api_cost"
TITLE = "Databricks API calls per run and detection delay: jobs service vs per-run polling"
COMPRESSION = 10.0
SLOTS = 4
BLOCKER_ENDPOINTS = {"POST /api/2.2/jobs/runs/cancel"}


def _calls(ws: RunningWorkspace) -> dict[str, int]:
    return {k: v for k, v in ws.counters("/api/").items() if "/__admin" not in k and k not in BLOCKER_ENDPOINTS}


class Blockers:
    """SLOTS sleeping runs that hold every executor slot, so what is submitted meanwhile stays QUEUED."""

    def __init__(self, ws: RunningWorkspace, clock: RunClock) -> None:
        self.w = ws.client()
        self.clock = clock
        task = dbx.Task(task_key="b", spark_python_task=dbx.SparkPythonTask(python_file=SLEEP_FILE, parameters=["600"]))
        self.job_id = int(
            self.w.jobs.create(
                name=f"bench-blocker-{uuid.uuid4().hex[:6]}", tasks=[task], max_concurrent_runs=SLOTS
            ).job_id
            or 0
        )
        self.runs: list[int] = []

    async def hold(self) -> None:
        self.runs = [int((await asyncio.to_thread(self.w.jobs.run_now, self.job_id)).run_id or 0) for _ in range(SLOTS)]
        await wait_until("blockers running", lambda: all(r in self.clock.started for r in self.runs), 60)

    async def release(self) -> None:
        for r in self.runs:
            await asyncio.to_thread(self.w.jobs.cancel_run, r)


async def _service(
    env: Env, ws: RunningWorkspace, clock: RunClock, sizes: list[int], progress: Progress, at: float, share: float
) -> list[dict[str, Any]]:
    wh = warehouse_id(ws)
    out = []
    async with jobs_stack(env, ws, clock, reconcile_interval_seconds=30.0 / COMPRESSION) as stack:
        for i, n in enumerate(sizes):
            progress(at + share * i / len(sizes), f"jobs service, {n} runs in flight")
            blockers = Blockers(ws, clock)
            await blockers.hold()
            await asyncio.sleep(1.0)
            ws.reset_counters()
            started = time.monotonic()
            key = f"cost-{n}-{uuid.uuid4().hex[:6]}"
            await stack.send(*[stack.request("acme", key, sql_job(ws, wh)) for _ in range(n)])
            await wait_until(f"{n} run-now", lambda n=n: _calls(ws).get("POST /api/2.2/jobs/run-now", 0) >= n, 600)
            submitted = time.monotonic() - started
            at_submit = _calls(ws)
            await blockers.release()
            mine: list[int] = []
            seen_before = set(stack.arrived)

            def done(
                n: int = n, skip: int = blockers.job_id, before: set[int] = seen_before, mine: list[int] = mine
            ) -> bool:
                jobs = list(clock.job_of.items())
                mine[:] = [r for r, j in jobs if j not in (0, skip) and r in stack.arrived and r not in before]
                return len(mine) >= n

            await wait_until(f"{n} run.finished", done, 600, every=0.2)
            calls = _calls(ws)
            delays = [stack.arrived[r] - clock.ended[r] for r in mine]
            out.append(
                {
                    "contender": "jobs service",
                    "runs": n,
                    "calls": calls,
                    "calls_at_all_submitted": at_submit,
                    "calls_total": sum(calls.values()),
                    "calls_per_run": round(sum(calls.values()) / n, 3),
                    "submit_seconds": round(submitted, 2),
                    "seconds": round(time.monotonic() - started, 2),
                    "detection_delay_seconds": distribution(delays),
                }
            )
    return out


async def _polling(ws: RunningWorkspace, clock: RunClock, n: int, interval: float) -> dict[str, Any]:
    w = ws.client()
    wh = warehouse_id(ws)
    task = dbx.Task(
        task_key="q",
        sql_task=dbx.SqlTask(file=dbx.SqlTaskFile(path=SQL_FILE, source=dbx.Source.WORKSPACE), warehouse_id=wh),
    )
    job_id = int(
        w.jobs.create(name=f"bench-poll-{uuid.uuid4().hex[:6]}", tasks=[task], max_concurrent_runs=1000).job_id or 0
    )
    blockers = Blockers(ws, clock)
    await blockers.hold()
    await asyncio.sleep(1.0)
    ws.reset_counters()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        runs = await asyncio.gather(
            *[loop.run_in_executor(pool, lambda: int(w.jobs.run_now(job_id).run_id or 0)) for _ in range(n)]
        )
        submitted = time.monotonic() - started
        at_submit = _calls(ws)
        await blockers.release()
        seen: dict[int, float] = {}
        await asyncio.sleep(interval)  # as the orchestrators do: submit, then the first poll one interval later
        while len(seen) < n:
            tick = time.monotonic()
            pending = [r for r in runs if r not in seen]

            def get(run_id: int) -> tuple[int, bool]:
                state = w.jobs.get_run(run_id).state
                return run_id, bool(
                    state
                    and state.life_cycle_state
                    and state.life_cycle_state.value in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
                )

            for run_id, terminal in await asyncio.gather(*[loop.run_in_executor(pool, get, r) for r in pending]):
                if terminal:
                    seen[run_id] = time.time()
            if time.monotonic() - started > 900:
                raise TimeoutError(f"polling: {len(seen)} of {n} seen")
            if len(seen) < n:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    calls = _calls(ws)
    delays = [seen[r] - clock.ended[r] for r in runs]
    dist = distribution(delays)
    return {
        "contender": f"polling every {interval * COMPRESSION:.0f} s (here {interval:g} s)",
        "runs": n,
        "calls": calls,
        "calls_at_all_submitted": at_submit,
        "calls_total": sum(calls.values()),
        "calls_per_run": round(sum(calls.values()) / n, 3),
        "submit_seconds": round(submitted, 2),
        "seconds": round(time.monotonic() - started, 2),
        "detection_delay_seconds": dist,
        "detection_delay_at_real_interval_p50_seconds": round(dist["p50"] * COMPRESSION, 1),
    }


async def run(env: Env, quick: bool, progress: Progress) -> dict[str, Any]:
    sizes = [5, 20] if quick else [10, 100, 1000]
    polls = [10.0 / COMPRESSION, 30.0 / COMPRESSION]
    results: list[dict[str, Any]] = []
    with workspace(env, "cost", SLOTS) as (ws, clock):
        results += await _service(env, ws, clock, sizes, progress, 0.0, 0.5)
        for i, n in enumerate(sizes):
            for p in polls:
                progress(0.5 + 0.5 * i / len(sizes), f"polling every {p * COMPRESSION:.0f} s, {n} runs")
                results.append(await _polling(ws, clock, n, p))
    progress(1.0, None)
    summary, figures = [], {}
    for n in sizes:
        svc = next(r for r in results if r["runs"] == n and r["contender"] == "jobs service")
        p10, p30 = (r for r in results if r["runs"] == n and r["contender"].startswith("polling"))
        figures[f"service_calls_per_run_{n}"] = svc["calls_per_run"]
        figures[f"poll10_calls_per_run_{n}"] = p10["calls_per_run"]
        figures[f"poll30_calls_per_run_{n}"] = p30["calls_per_run"]
        biggest = n == max(sizes)
        summary.append(
            row(
                f"API calls per run, {n} runs in flight (baseline: runs/get every 10 s; every 30 s: "
                f"{p30['calls_per_run']:.2f})",
                svc["calls_per_run"],
                baseline=p10["calls_per_run"],
                ratio=svc["calls_per_run"] / p10["calls_per_run"],
                target="<= 3 per run at 1,000" if biggest else None,
                met=(svc["calls_per_run"] <= 3) if biggest else None,
                note=("jobs service by endpoint: " + ", ".join(f"{k} {v}" for k, v in sorted(svc["calls"].items())))
                if biggest
                else "",
            )
        )
        summary.append(
            row(
                f"detection delay p95, {n} runs in flight (baseline: 10 s polling, at real interval)",
                svc["detection_delay_seconds"]["p95"],
                baseline=round(p10["detection_delay_seconds"]["p95"] * COMPRESSION, 2),
                unit="s",
                note=f"time compressed {COMPRESSION:g}x: the baseline polled every {polls[0]:g} s here"
                if biggest
                else "",
            )
        )
    return {"figures": figures, "compression": COMPRESSION, "slots": SLOTS, "results": results, "summary": summary}
