"""Testing kit for code built on the runtime: a real-broker, real-database harness for delivery tests.

`Harness(bootstrap, pg_url)` gives one isolated topic prefix, database schema and consumer group, a broker
made by `make_broker` with a `job.requested` handler whose behaviour a test steers (failures to raise, delays,
a follow-up event through the outbox), and helpers to send events and read effects and dead letters.
Services' tests use the same kit for their own handlers on the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.topics import JOB_REQUESTED, dlq_topic
from apev_runtime import outbox
from apev_runtime.broker import make_broker, subscriber
from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.delivery.middleware import Tx
from apev_runtime.delivery.tools import DlqMessage, read_dlq
from apev_runtime.settings import DeliverySettings, ServiceSettings
from apev_runtime.tracing import current_traceparent, setup_tracing


def job_event(tenant: str = "acme", key: str | None = None, **over: Any) -> CloudEvent[Any]:
    data = JobRequested(
        tenant_id=tenant,
        kind="adhoc",
        key=key or uuid.uuid4().hex[:12],
        action={"type": "run"},
    )
    return new_event(data, tenant_id=tenant, source="tests/delivery", **over)


async def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create topics that do not exist yet (the kit does not depend on the local stack launcher)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        missing = [t for t in topics if t not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int, *, timeout: float = 60.0) -> AsyncIterator[Any]:
    """Run a service's ASGI app under uvicorn in this process (its lifespan starts the broker, the relay and
    the background jobs); yields the app once it listens, and shuts it down in order on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(timeout):
        while not server.started:
            assert not serving.done(), serving.exception()
            await asyncio.sleep(0.05)
    try:
        yield app
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout)


@contextlib.contextmanager
def no_databricks_env() -> Iterator[None]:
    """Hide the machine's `DATABRICKS_*` variables and `~/.databrickscfg` from the SDK (two auth methods at
    once make it refuse to start), restoring them afterwards."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    try:
        yield
    finally:
        os.environ.pop("DATABRICKS_CONFIG_FILE", None)
        os.environ.update(saved)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Harness:
    bootstrap: str
    pg_url: str
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    group: str = field(default_factory=lambda: f"g-{uuid.uuid4().hex[:8]}")
    delivery: DeliverySettings = field(
        default_factory=lambda: DeliverySettings(
            retry_attempts=4,
            retry_timeout_seconds=15,
            retry_initial_wait_seconds=0.05,
            retry_max_wait_seconds=0.3,
            max_event_bytes=64 * 1024,
            breaker_pause_seconds=0.5,
        )
    )
    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    slow: dict[str, float] = field(default_factory=dict)
    """Seconds the handler sleeps (after its effect, before returning) for these event ids."""
    extra_middlewares: list[Any] = field(default_factory=list)
    follow_up: Callable[[CloudEvent[Any]], CloudEvent[Any] | None] | None = None
    """When set, the handler queues the event it returns through the outbox, in the handler's transaction."""

    @property
    def topic(self) -> str:
        return self.prefix + JOB_REQUESTED

    @property
    def dlq(self) -> str:
        return dlq_topic(self.topic)

    def settings(self) -> ServiceSettings:
        return ServiceSettings(
            service_name="delivery-test",
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_prefix=self.prefix,
            database_url=self.pg_url,
            database_schema=self.prefix.rstrip(".").replace("-", "_"),
            delivery=self.delivery,
        )

    async def start(self) -> None:
        setup_tracing("delivery-test")
        await create_topics(self.bootstrap, [self.topic, self.dlq], partitions=2)
        settings = self.settings()
        self.db: Database = create_database(settings.resolved_database_url(), settings.database_schema)
        await migrate.upgrade(self.db)
        async with self.db.transaction() as tx:
            await tx.execute(text("CREATE TABLE IF NOT EXISTS effects (event_id text NOT NULL, note text)"))
        self.broker = make_broker(settings, db=self.db, extra_middlewares=self.extra_middlewares)

        @subscriber(self.broker, JOB_REQUESTED, group_id=self.group)
        async def handle(event: CloudEvent[JobRequested], tx: Tx) -> None:
            self.calls.append(event.id)
            await tx.execute(text("INSERT INTO effects VALUES (:id, :note)"), {"id": event.id, "note": event.data.key})
            if event.id in self.slow:
                await asyncio.sleep(self.slow[event.id])
            pending = self.failures.get(event.id)
            if pending:
                raise pending.pop(0)
            if self.follow_up is not None and (out := self.follow_up(event)) is not None:
                await outbox.add(tx, out, traceparent=current_traceparent())

        await self.broker.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await self.producer.start()

    async def stop(self) -> None:
        await self.broker.stop()
        await self.producer.stop()
        await self.db.dispose()

    async def send(
        self,
        event: CloudEvent[Any] | None = None,
        *,
        raw: bytes | None = None,
        key: bytes = b"acme",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        if event is not None:
            record = encode(event)
            raw, key, headers = record.value, record.key, record.headers
        assert raw is not None
        meta = await self.producer.send_and_wait(self.topic, value=raw, key=key, headers=headers or [])
        return meta.partition, meta.offset

    async def effects(self, event_id: str) -> int:
        async with self.db.engine.connect() as conn:
            return int(
                (
                    await conn.execute(text("SELECT count(*) FROM effects WHERE event_id = :id"), {"id": event_id})
                ).scalar_one()
            )

    async def dead_letters(self) -> list[DlqMessage]:
        return await read_dlq(self.bootstrap, self.dlq)
