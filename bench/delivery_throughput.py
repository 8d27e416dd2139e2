"""Benchmark: events per second through the delivery middleware on real Kafka and a real database.

Publishes N `job.requested` events (keys spread over T tenants), then starts one consumer (the runtime's
broker: contracts decode, inbox claim + handler effect in one transaction, offset commit per message)
and measures until every event has its effect row. Writes the figures to bench/results/delivery.json.

    uv run python bench/delivery_throughput.py --events 2000 --db postgres
    KAFKA_BOOTSTRAP_SERVERS=... APEV_TEST_PG_URL=... uv run python bench/delivery_throughput.py

Without KAFKA_BOOTSTRAP_SERVERS it starts a private broker from the cached jars; without APEV_TEST_PG_URL
it runs deploy/postgres.sh (`--db sqlite` uses a temporary SQLite file instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime.broker import make_broker, subscriber
from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database
from apev_runtime.delivery.middleware import Tx
from apev_runtime.logging import configure_logging
from apev_runtime.settings import ServiceSettings
from apev_stack.kafka import KafkaBroker, create_topics, free_port
from apev_stack.paths import repo_root


def _pg_url() -> str:
    if url := os.environ.get("APEV_TEST_PG_URL"):
        return url
    out = subprocess.run(
        ["bash", str(repo_root() / "deploy" / "postgres.sh")], capture_output=True, text=True, check=True
    )
    return next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("APEV_TEST_PG_URL="))


async def _bench_database(admin: str) -> str:
    """A database of its own (`apev_bench`, kept between runs; each run uses a fresh schema)."""
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = 'apev_bench'"):
            await conn.execute('CREATE DATABASE "apev_bench"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + "/apev_bench"


async def run(events: int, tenants: int, db_kind: str, bootstrap: str) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await create_topics(bootstrap, [prefix + JOB_REQUESTED, dlq_topic(prefix + JOB_REQUESTED)], partitions=3)
    if db_kind == "postgres":
        url = await _bench_database(_pg_url())
        schema: str | None = prefix.rstrip(".")
    else:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
        schema = None
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
    async with db.transaction() as tx:
        await tx.execute(
            text("CREATE TABLE IF NOT EXISTS bench_effects (event_id text PRIMARY KEY, at double precision)")
        )

    payloads: list[CloudEvent[Any]] = []
    for i in range(events):
        tenant = f"tenant-{i % tenants}"
        data = JobRequested(tenant_id=tenant, kind="adhoc", key=f"k{i}", action={"type": "run"})  # type: ignore[arg-type]
        payloads.append(new_event(data, tenant_id=tenant, source="bench"))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    sent_at: dict[str, float] = {}
    t0 = time.perf_counter()
    for event in payloads:
        rec = encode(event)
        sent_at[event.id] = time.time()
        await producer.send(prefix + rec.topic, rec.value, key=rec.key, headers=rec.headers)
    await producer.flush()
    publish_s = time.perf_counter() - t0
    await producer.stop()

    broker = make_broker(settings, db=db)

    @subscriber(broker, JOB_REQUESTED, group_id=f"{prefix}g")
    async def handle(event: CloudEvent[JobRequested], tx: Tx) -> None:
        await tx.execute(text("INSERT INTO bench_effects VALUES (:id, :at)"), {"id": event.id, "at": time.time()})

    # Latency comes from the effect rows afterwards, so the handler does nothing beyond its effect.
    t1 = time.perf_counter()
    await broker.start()
    while True:
        async with db.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM bench_effects"))).scalar_one()
        if count >= events:
            break
        await asyncio.sleep(0.2)
    consume_s = time.perf_counter() - t1
    await broker.stop()
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT event_id, at FROM bench_effects"))).all()
    await db.dispose()
    latencies = sorted(at - sent_at[eid] for eid, at in rows)
    return {
        "benchmark": "delivery_throughput",
        "when": datetime.now(UTC).isoformat(),
        "git_rev": _git_rev(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "database": db_kind,
        "events": events,
        "tenants": tenants,
        "partitions": 3,
        "consumers": 1,
        "publish_seconds": round(publish_s, 3),
        "publish_events_per_second": round(events / publish_s, 1),
        "consume_seconds": round(consume_s, 3),
        "consume_events_per_second": round(events / consume_s, 1),
        "note": "consume time includes consumer start and group join; latency is publish-to-effect-commit, "
        "measured for a backlog (all events published before the consumer starts)",
        "backlog_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        },
    }


def _git_rev() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
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
        print(f"bench: {args.events} events, {args.tenants} tenants, {args.db}", flush=True)
        result = asyncio.run(run(args.events, args.tenants, args.db, bootstrap))
    finally:
        if broker is not None:
            broker.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else []
    existing = existing if isinstance(existing, list) else [existing]
    args.out.write_text(json.dumps([*existing, result], indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"bench: appended to {args.out}")


if __name__ == "__main__":
    main()
