"""5. Tenant scaling: the same event load over 1, 10, 100 and 1,000 tenants, through the monitor's real path
(run.finished into its rule state: delivery kit, inbox, its handlers, PostgreSQL).

For each tenant count a fresh monitor (its own schema and consumer group): a burst of N events (throughput,
first send to last inbox row), then M events paced at RATE/s (per-event latency: send to the inbox row's
`processed_at`), then one evaluation pass of every rule over the state. Events are keyed by tenant, so one
tenant means one partition in use (three with more tenants): that is the design (a tenant's order is kept).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from _common import Env, Progress, distribution, row
from _monitor_stack import monitor_stack, now, run_finished

NAME = "tenants"
TITLE = "the same event load over 1, 10, 100, 1,000 tenants: latency and throughput"
RATE = 10.0


async def _one(env: Env, tenants: int, n: int, m: int) -> dict[str, Any]:
    async with monitor_stack(env, env.tmp / f"ten-{tenants}-{uuid.uuid4().hex[:6]}") as s:
        end = now()
        jobs = max(4, tenants)
        burst = [
            run_finished(
                f"t{i % tenants}", str(1000 + i % jobs), str(10**6 + i), "failure" if i % 10 == 0 else "success", end
            )
            for i in range(n)
        ]
        t0 = time.monotonic()
        await s.send(*burst)
        await s.wait_consumed(n)
        burst_s = time.monotonic() - t0
        paced = [
            run_finished(f"t{i % tenants}", str(1000 + i % jobs), str(2 * 10**6 + i), "success", end) for i in range(m)
        ]
        sent: dict[str, datetime] = {}
        for event in paced:
            sent[event.id] = datetime.now(UTC)
            await s.send(event)
            await asyncio.sleep(1 / RATE)
        await s.producer.flush()
        await s.wait_consumed(n + m)
        done = await s.processed_at(list(sent))
        latencies = [(done[k] - sent[k]).total_seconds() * 1000 for k in sent]
        e0 = time.monotonic()
        await s.service.tick()
        evaluation = time.monotonic() - e0
    return {
        "tenants": tenants,
        "burst_events": n,
        "events_per_second": round(n / burst_s, 1),
        "paced_events": m,
        "rate_per_second": RATE,
        "latency_ms": distribution(latencies, 2),
        "evaluation_pass_seconds": round(evaluation, 3),
    }


async def run(env: Env, quick: bool, progress: Progress) -> dict[str, Any]:
    counts = [1, 10] if quick else [1, 10, 100, 1000]
    n, m = (150, 30) if quick else (600, 200)
    results = []
    for i, t in enumerate(counts):
        progress(i / len(counts), f"{t} tenants")
        results.append(await _one(env, t, n, m))
    progress(1.0, None)
    first, last = results[0], results[-1]
    growth_p50 = last["latency_ms"]["p50"] / first["latency_ms"]["p50"] - 1
    growth_p95 = last["latency_ms"]["p95"] / first["latency_ms"]["p95"] - 1
    tp_ratio = last["events_per_second"] / first["events_per_second"]
    span = f"{first['tenants']} -> {last['tenants']} tenants"
    return {
        "figures": {
            "latency_growth_p50": round(growth_p50, 3),
            "latency_growth_p95": round(growth_p95, 3),
            "throughput_ratio": round(tp_ratio, 3),
            **{f"p50_ms_{r['tenants']}": r["latency_ms"]["p50"] for r in results},
            **{f"events_per_second_{r['tenants']}": r["events_per_second"] for r in results},
        },
        "results": results,
        "summary": [
            row(
                f"per-event latency p50 growth, {span} ({m} events at {RATE:g}/s)",
                f"{growth_p50:+.1%}",
                baseline=f"{first['latency_ms']['p50']} ms at {first['tenants']}",
                ratio=last["latency_ms"]["p50"] / first["latency_ms"]["p50"],
                target="< 10 % growth",
                met=growth_p50 < 0.10,
                note="p50 by tenant count: "
                + ", ".join(f"{r['tenants']}: {r['latency_ms']['p50']} ms" for r in results)
                + f"; p95 growth {growth_p95:+.1%}",
            ),
            row(
                f"throughput, {span} ({n}-event burst)",
                last["events_per_second"],
                baseline=first["events_per_second"],
                ratio=tp_ratio,
                unit="ev/s",
                note="by tenant count: "
                + ", ".join(f"{r['tenants']}: {r['events_per_second']:.0f}/s" for r in results)
                + "; evaluation pass: "
                + ", ".join(f"{r['tenants']}: {r['evaluation_pass_seconds']} s" for r in results),
            ),
        ],
    }
