"""1. Delivery overhead: the delivery kit (no-op handler, inbox, commits) against a raw aiokafka loop, A/B.

The measurement itself is `bench/delivery_throughput.py` (also runnable alone); this adapter gives it the
suite's broker, sizes and summary rows, and turns its cProfile into the key finding.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

import delivery_throughput as dt
from _common import Env, Progress, row

NAME = "delivery"
TITLE = "delivery kit (no-op handler) vs raw aiokafka loop, PostgreSQL and SQLite"
TARGET = 0.5


def _finding(profile: dict[str, Any]) -> str:
    top = profile["top"][:5]
    total = sum(r["self_us_per_event"] for r in profile["top"])
    parts = [f"{r['function']} {r['self_us_per_event']:.0f} us" for r in top]
    return (
        f"cProfile of a kit round ({profile['database']}), self time per event of the top functions: "
        + "; ".join(parts)
        + f" (top 20 together {total:.0f} us per event)"
    )


async def run(env: Env, quick: bool, progress: Progress) -> dict[str, Any]:
    args = argparse.Namespace(
        events=300 if quick else 10_000,
        tenants=20,
        rounds=1 if quick else 3,
        db=["postgres"] if quick else ["postgres", "sqlite"],
        latency_events=0 if quick else 200,
        baseline_rev=dt.BASELINE_REV,
    )
    progress(0.05, f"{args.events} events, {args.rounds} A/B rounds per database")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        result = await dt.run(args, env.bootstrap)
    progress(1.0, None)
    summary = []
    for db, s in result["summary"].items():
        summary.append(
            row(
                f"kit events/s, no-op handler ({db})",
                s["kit_events_per_second_median"],
                baseline=s["raw_events_per_second_median"],
                ratio=s["ratio_median"],
                target=f"ratio >= {TARGET}",
                met=s["ratio_median"] >= TARGET,
                unit="ev/s",
                note=(
                    f"ratio {s['ratio_min']:.2f}-{s['ratio_max']:.2f} over {args.rounds} A/B rounds; "
                    "the kit does per event what the raw loop does not: contracts decode and validation, an inbox "
                    "row, a database transaction per batch (see the profile finding)"
                )
                if s["ratio_median"] < TARGET
                else "",
            )
        )
    lat = result.get("low_load_latency")
    if lat:
        summary.append(
            row(
                "per-event latency at low load, p50 (send -> effect committed)",
                lat["p50_ms_median"]["current"],
                baseline=lat["p50_ms_median"]["baseline"],
                ratio=lat["p50_ratio_current_over_baseline"],
                unit="ms",
                note=f"baseline: revision {lat['baseline_rev']} (one message, one transaction)",
            )
        )
    figures = {f"{db}_{k}": v for db, s in result["summary"].items() for k, v in s.items()}
    return {
        "figures": figures,
        "detail": result,
        "summary": summary,
        "findings": [_finding(result["profile"])],
        "log": log.getvalue().splitlines()[-20:],
    }
