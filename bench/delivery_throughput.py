"""Benchmark: the delivery kit against a raw aiokafka loop, side by side, on real Kafka and a real database.

One backlog of N `job.requested` events (keys spread over T tenants, 3 partitions) is published once. Then, for
PostgreSQL and SQLite, rounds alternate A/B (at least 3 each): the **raw** baseline (aiokafka consumer group,
`getmany`, `json.loads` of every value, one offset commit per fetched batch) and the **kit** (the runtime's
broker: contracts decode, inbox claim, a no-op handler, database commit, offset commit), each in a new
consumer group over the same events, timed from the first fetched batch to the commit of the batch holding
the last event. The figure that matters is the ratio kit / raw within one round.

It also records a per-message profile of the kit (cProfile, one extra PostgreSQL round not counted in the
throughput figures) and the per-event latency at low load (one event at a time) of this tree's kit against a
baseline revision's (default: the last revision before batched consumption), alternating, in the same run.

    uv run python bench/delivery_throughput.py                       # defaults: 10000 events, 3 rounds
    uv run python bench/delivery_throughput.py --events 5000 --rounds 5 --db postgres
    KAFKA_BOOTSTRAP_SERVERS=... APEV_TEST_PG_URL=... uv run python bench/delivery_throughput.py

Without KAFKA_BOOTSTRAP_SERVERS it starts a private broker from the cached jars; without APEV_TEST_PG_URL it
runs deploy/postgres.sh. Figures are appended to bench/results/delivery.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream import BaseMiddleware

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime.broker import FETCH_MAX_WAIT_MS, make_broker, subscriber
from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database
from apev_runtime.delivery.middleware import Tx
from apev_runtime.logging import configure_logging
from apev_runtime.settings import ServiceSettings
from apev_stack.kafka import KafkaBroker, create_topics, free_port
from apev_stack.paths import repo_root

BASELINE_REV = "7ba2f65"  # main before batched consumption (issue 13): one message, one transaction, one commit
PARTITIONS = 3


def _pg_url() -> str:
    if url := os.environ.get("APEV_TEST_PG_URL"):
        return url
    out = subprocess.run(
        ["bash", str(repo_root() / "deploy" / "postgres.sh")], capture_output=True, text=True, check=True
    )
    return next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("APEV_TEST_PG_URL="))


async def _bench_database(admin: str) -> str:
    """A database of its own (`apev_bench`, kept between runs; each round uses a fresh schema)."""
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'apev_bench'"):
            await conn.execute('CREATE DATABASE "apev_bench"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/apev_bench"


async def publish_backlog(bootstrap: str, topic: str, events: int, tenants: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    t0 = time.perf_counter()
    try:
        for i in range(events):
            tenant = f"tenant-{i % tenants}"
            data = JobRequested(tenant_id=tenant, kind="adhoc", key=f"k{i}", action={"type": "run"})  # type: ignore[arg-type]
            rec = encode(new_event(data, tenant_id=tenant, source="bench"))
            await producer.send(topic, rec.value, key=rec.key, headers=rec.headers)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def raw_round(bootstrap: str, topic: str, events: int, batch: int) -> float:
    """Baseline: what any at-least-once consumer must do at least (fetch, decode JSON, commit per batch)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # the kit's subscribers use the same (apev_runtime.broker)
    )
    await consumer.start()
    seen = 0
    first: float | None = None
    try:
        while seen < events:
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            if not fetched:
                continue
            if first is None:
                first = time.perf_counter()
            for records in fetched.values():
                for r in records:
                    json.loads(r.value)
                    seen += 1
            await consumer.commit()
        assert first is not None
        return time.perf_counter() - first
    finally:
        await consumer.stop()


class _Clock:
    def __init__(self, events: int) -> None:
        self.events = events
        self.handled = 0
        self.first: float | None = None
        self.last: float | None = None
        self.finished = asyncio.Event()


def _clock_middleware(clock: _Clock) -> type[BaseMiddleware]:
    class Clock(BaseMiddleware):  # type: ignore[type-arg]
        """Starts the clock when the first fetched batch comes in (as the raw loop's does)."""

        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            if clock.first is None:
                clock.first = time.perf_counter()
            return await call_next(msg)

    return Clock


def _stop_clock_on_commit(consumer: Any, clock: _Clock) -> None:
    """Stops the clock when the offsets of the batch holding the last event are committed (FastStream commits
    after the middlewares and the database commit), so both sides end at their last offset commit."""
    commit = consumer.commit

    async def timed_commit(*args: Any, **kwargs: Any) -> Any:
        result = await commit(*args, **kwargs)
        if clock.handled >= clock.events and not clock.finished.is_set():
            clock.last = time.perf_counter()
            clock.finished.set()
        return result

    consumer.commit = timed_commit


async def kit_round(
    bootstrap: str, prefix: str, events: int, db_kind: str, pg_admin: str | None, profile: cProfile.Profile | None
) -> float:
    if db_kind == "postgres":
        assert pg_admin is not None
        url, schema = pg_admin, f"bench_{uuid.uuid4().hex[:8]}"
    else:
        url, schema = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db", None
    settings = ServiceSettings(
        service_name="bench",
        kafka_bootstrap_servers=bootstrap,
        kafka_topic_prefix=prefix,
        database_url=url,
        database_schema=schema,
        log_level="WARNING",
    )
    db = create_database(url, schema)
    await migrate.upgrade(db)
    clock = _Clock(events)
    broker = make_broker(settings, db=db, extra_middlewares=[_clock_middleware(clock)])

    @subscriber(broker, JOB_REQUESTED, group_id=f"kit-{uuid.uuid4().hex[:8]}")
    async def handle(event: CloudEvent[JobRequested], tx: Tx) -> None:
        clock.handled += 1  # a no-op handler: what is measured is the kit

    await broker.start()
    _stop_clock_on_commit(broker.subscriptions[-1].subscriber.consumer, clock)  # type: ignore[attr-defined]
    if profile is not None:
        profile.enable()
    try:
        await asyncio.wait_for(clock.finished.wait(), 300)
    finally:
        if profile is not None:
            profile.disable()
        await broker.stop()
        if schema:
            from sqlalchemy import text

            async with db.transaction() as tx:
                await tx.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await db.dispose()
    assert clock.first is not None and clock.last is not None
    return clock.last - clock.first


def _profile_rows(profile: cProfile.Profile, events: int, top: int = 20) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile)
    rows = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}:{func}",
                "calls_per_event": round(calls / events, 2),
                "self_us_per_event": round(tottime / events * 1e6, 2),
                "cumulative_us_per_event": round(cumtime / events * 1e6, 2),
            }
        )
    rows.sort(key=lambda r: -float(r["self_us_per_event"]))
    return rows[:top]


def _baseline_tree(rev: str) -> Path:
    """A checkout of `rev` beside the repository's git data (made once, reused)."""
    path = Path(tempfile.gettempdir()) / f"apev-bench-baseline-{rev}"
    if not (path / "runtime").exists():
        subprocess.run(
            ["git", "-C", str(repo_root()), "worktree", "add", "--detach", "--force", str(path), rev],
            check=True,
            capture_output=True,
        )
    return path


def _probe(bootstrap: str, db_url: str, schema: str | None, tree: Path | None, events: int) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(str(tree / p) for p in ("runtime", "contracts"))
    cmd = [sys.executable, str(Path(__file__).with_name("delivery_latency_probe.py")), "--bootstrap", bootstrap]
    cmd += ["--db-url", db_url, "--events", str(events)] + (["--schema", schema] if schema else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"latency probe failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    topic = prefix + JOB_REQUESTED
    await create_topics(bootstrap, [topic, dlq_topic(topic)], partitions=PARTITIONS)
    publish_s = await publish_backlog(bootstrap, topic, args.events, args.tenants)
    print(f"bench: published {args.events} events in {publish_s:.2f}s", flush=True)
    pg_admin = await _bench_database(_pg_url()) if "postgres" in args.db else None
    batch = ServiceSettings().delivery.batch_size

    rounds: list[dict[str, Any]] = []
    for db_kind in args.db:
        for i in range(args.rounds):
            raw_s = await raw_round(bootstrap, topic, args.events, batch)
            kit_s = await kit_round(bootstrap, prefix, args.events, db_kind, pg_admin, None)
            row = {
                "database": db_kind,
                "round": i + 1,
                "raw_events_per_second": round(args.events / raw_s, 1),
                "kit_events_per_second": round(args.events / kit_s, 1),
                "ratio_kit_over_raw": round(raw_s / kit_s, 4),
            }
            rounds.append(row)
            print(f"bench: {json.dumps(row)}", flush=True)
    summary = {}
    for db_kind in args.db:
        mine = [r for r in rounds if r["database"] == db_kind]
        summary[db_kind] = {
            "raw_events_per_second_median": statistics.median(r["raw_events_per_second"] for r in mine),
            "kit_events_per_second_median": statistics.median(r["kit_events_per_second"] for r in mine),
            "ratio_median": statistics.median(r["ratio_kit_over_raw"] for r in mine),
            "ratio_min": min(r["ratio_kit_over_raw"] for r in mine),
            "ratio_max": max(r["ratio_kit_over_raw"] for r in mine),
        }

    profiled_db = args.db[0]
    profile = cProfile.Profile()
    await kit_round(bootstrap, prefix, args.events, profiled_db, pg_admin, profile)
    result: dict[str, Any] = {
        "benchmark": "delivery_kit_vs_raw",
        "when": datetime.now(UTC).isoformat(),
        "git_rev": _git_rev(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "events": args.events,
        "tenants": args.tenants,
        "partitions": PARTITIONS,
        "batch_size": batch,
        "handler": "no-op",
        "publish_events_per_second": round(args.events / publish_s, 1),
        "rounds": rounds,
        "summary": summary,
        "profile": {
            "database": profiled_db,
            "note": "cProfile of one extra kit round (not in the figures above; profiling slows it); top functions "
            "by self time, per event",
            "top": _profile_rows(profile, args.events),
        },
    }
    if args.latency_events:
        result["low_load_latency"] = _latency(args, bootstrap, pg_admin)
    return result


def _latency(args: argparse.Namespace, bootstrap: str, pg_admin: str | None) -> dict[str, Any]:
    baseline = _baseline_tree(args.baseline_rev)
    rows = []
    for i in range(args.rounds):
        for name, tree in (("baseline", baseline), ("current", None)):
            schema = f"lat_{uuid.uuid4().hex[:8]}" if pg_admin else None
            url = pg_admin or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/lat.db"
            probe = _probe(bootstrap, url, schema, tree, args.latency_events)
            rows.append({"kit": name, "round": i + 1, **probe})
            print(f"bench: latency {name}: p50 {probe['p50_ms']} ms, p95 {probe['p95_ms']} ms", flush=True)
    p50 = {k: statistics.median(r["p50_ms"] for r in rows if r["kit"] == k) for k in ("baseline", "current")}
    return {
        "baseline_rev": args.baseline_rev,
        "database": "postgres" if pg_admin else "sqlite",
        "events_per_probe": args.latency_events,
        "what": "producer send -> effect and inbox row committed, one event at a time",
        "rounds": rows,
        "p50_ms_median": p50,
        "p50_ratio_current_over_baseline": round(p50["current"] / p50["baseline"], 3),
    }


def _git_rev() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per database (at least 3)")
    parser.add_argument("--db", nargs="+", choices=["postgres", "sqlite"], default=["postgres", "sqlite"])
    parser.add_argument("--latency-events", type=int, default=200, help="events per latency probe; 0 skips it")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--out", type=Path, default=repo_root() / "bench" / "results" / "delivery.json")
    args = parser.parse_args()
    configure_logging(os.environ.get("BENCH_LOG_LEVEL", "WARNING"), "console")
    broker: KafkaBroker | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = KafkaBroker(home=Path(tempfile.mkdtemp()) / "kafka", port=free_port(), controller_port=free_port())
        print(f"bench: starting a private broker on {broker.bootstrap} ...", flush=True)
        broker.start()
        bootstrap = broker.bootstrap
    try:
        print(f"bench: {args.events} events, {args.tenants} tenants, {args.rounds} rounds, {args.db}", flush=True)
        result = asyncio.run(run(args, bootstrap))
    finally:
        if broker is not None:
            broker.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else []
    existing = existing if isinstance(existing, list) else [existing]
    args.out.write_text(json.dumps([*existing, result], indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    if "low_load_latency" in result:
        print(json.dumps(result["low_load_latency"]["p50_ms_median"]))
    print(f"bench: appended to {args.out}")


if __name__ == "__main__":
    main()
