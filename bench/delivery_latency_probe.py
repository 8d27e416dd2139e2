"""Probe: per-event latency at low load through the delivery kit importable on `sys.path` (one event at a time).

Run by `bench/delivery_throughput.py` twice per round, once with this tree's runtime and once with a
baseline revision's (PYTHONPATH pointing at a checkout of it), so both figures come from the same run.
The API it uses (`make_broker`, `subscriber`, `Tx`, broker middlewares) is the same in both.

    python bench/delivery_latency_probe.py --bootstrap HOST:PORT --db-url URL [--schema S] --events 200

Latency: from just before the producer's send to the moment the broker middleware around delivery returns
(the event's effect and inbox row committed). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import BaseMiddleware
from sqlalchemy import text

import apev_runtime
from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime.broker import make_broker, subscriber
from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database
from apev_runtime.delivery.middleware import Tx
from apev_runtime.logging import configure_logging
from apev_runtime.settings import ServiceSettings

done: asyncio.Queue[float] = asyncio.Queue()


class Stamp(BaseMiddleware):  # type: ignore[type-arg]
    """Outside the delivery kit: runs after its database commit, before the offset commit."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        result = await call_next(msg)
        done.put_nowait(time.perf_counter())
        return result


async def main(bootstrap: str, db_url: str, schema: str | None, events: int, warmup: int) -> dict[str, Any]:
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(prefix + t, num_partitions=1, replication_factor=1)
                for t in (JOB_REQUESTED, dlq_topic(JOB_REQUESTED))
            ]
        )
    finally:
        await admin.close()
    settings = ServiceSettings(
        service_name="latency-probe",
        kafka_bootstrap_servers=bootstrap,
        kafka_topic_prefix=prefix,
        database_url=db_url,
        database_schema=schema,
        log_level="WARNING",
    )
    db = create_database(settings.resolved_database_url(), settings.database_schema)
    await migrate.upgrade(db)
    async with db.transaction() as tx:
        await tx.execute(text("CREATE TABLE IF NOT EXISTS probe_effects (event_id text PRIMARY KEY)"))
    broker = make_broker(settings, db=db, extra_middlewares=[Stamp])

    @subscriber(broker, JOB_REQUESTED, group_id=f"{prefix}g")
    async def handle(event: CloudEvent[JobRequested], tx: Tx) -> None:
        await tx.execute(text("INSERT INTO probe_effects VALUES (:id)"), {"id": event.id})

    await broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=0)
    await producer.start()
    latencies: list[float] = []
    try:
        for i in range(warmup + events):
            data = JobRequested(tenant_id="acme", kind="adhoc", key=f"k{i}", action={"type": "run"})  # type: ignore[arg-type]
            record = encode(new_event(data, tenant_id="acme", source="bench/latency"))
            sent = time.perf_counter()
            await producer.send_and_wait(prefix + record.topic, record.value, key=record.key, headers=record.headers)
            finished = await asyncio.wait_for(done.get(), 30)
            if i >= warmup:
                latencies.append((finished - sent) * 1000)
    finally:
        await producer.stop()
        await broker.stop()
        await db.dispose()
    latencies.sort()
    return {
        "runtime": apev_runtime.__file__,
        "events": events,
        "p50_ms": round(statistics.median(latencies), 3),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    print(json.dumps(asyncio.run(main(args.bootstrap, args.db_url, args.schema, args.events, args.warmup))))
