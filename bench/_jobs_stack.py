"""The jobs service (in-process, under uvicorn) against the local workspace (in-process, its executor's run
listeners timing every run's start and end), a reader of `run.finished` timing each arrival, for benchmarks 2-3."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from _common import Env, quiet_databricks_env
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, decode, encode, new_event
from apev_contracts.topics import all_topics
from apev_jobs.app import create_app
from apev_jobs.service import JobsService
from apev_jobs.settings import Settings
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, serve_app
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace, running_workspace, upload

JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"  # noqa: S105 (local stand-ins only)
HOOK_PASSWORD = "bench-hook"  # noqa: S105
FOLDER = "/Shared/apev-bench"
SQL_FILE = f"{FOLDER}/one.sql"
SLEEP_FILE = f"{FOLDER}/sleep.py"


@dataclass
class RunClock:
    """Wall-clock times the workspace's executor started and ended each run (set from its thread)."""

    started: dict[int, float] = field(default_factory=dict)
    ended: dict[int, float] = field(default_factory=dict)
    job_of: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_run(self, event: str, run: dict[str, Any]) -> None:
        now = time.time()
        with self.lock:
            self.job_of[int(run["run_id"])] = int(run.get("job_id") or 0)
            (self.started if event == "run.started" else self.ended).setdefault(int(run["run_id"]), now)


@contextlib.contextmanager
def workspace(env: Env, name: str, slots: int) -> Any:
    with (
        quiet_databricks_env(),
        running_workspace(env.tmp / f"ws-{name}-{uuid.uuid4().hex[:6]}", executor_slots=slots) as ws,
    ):
        ws.workspace.webhooks.retry_base = 0.2
        w = ws.client()
        upload(w, SQL_FILE, "SELECT 1")
        upload(w, SLEEP_FILE, "import sys, time\ntime.sleep(float(sys.argv[1]))")
        clock = RunClock()
        ws.workspace.executor.listeners.append(clock.on_run)
        yield ws, clock


def warehouse_id(ws: RunningWorkspace) -> str:
    return str(next(iter(ws.client().warehouses.list())).id)


def sql_job(ws: RunningWorkspace, wh: str, max_concurrent: int = 1000) -> dict[str, Any]:
    return {
        "tasks": [{"task_key": "q", "sql_task": {"file": SQL_FILE, "warehouse_id": wh}}],
        "max_concurrent_runs": max_concurrent,
    }


@dataclass
class JobsStack:
    ws: RunningWorkspace
    clock: RunClock
    env: Env
    prefix: str
    settings: Settings
    service: JobsService
    producer: AIOKafkaProducer
    arrived: dict[int, float] = field(default_factory=dict)  # run_id -> when its run.finished was read
    outcome: dict[int, str] = field(default_factory=dict)

    def request(self, tenant: str, key: str, job: dict[str, Any]) -> CloudEvent[JobRequested]:
        data = JobRequested.model_validate(
            {"tenant_id": tenant, "kind": "adhoc", "key": key, "job": job, "action": {"type": "run"}}
        )
        return new_event(data, tenant_id=tenant, source="bench/jobs")

    async def send(self, *events: CloudEvent[Any]) -> None:
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        await self.producer.flush()


async def _read_finished(stack: JobsStack, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        stack.prefix + "run.finished", bootstrap_servers=stack.env.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for r in records:
                    event = decode(r.value, list(r.headers), topic="run.finished")
                    stack.arrived.setdefault(int(event.data.run_id), now)
                    stack.outcome[int(event.data.run_id)] = str(event.data.outcome)
    finally:
        await consumer.stop()


def jobs_settings(ws: RunningWorkspace, env: Env, pg: str, prefix: str, **over: Any) -> Settings:
    port = free_port()
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": env.bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg,
        "database_schema": prefix.rstrip(".") + "_jobs",
        "http_port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "databricks_host": ws.host,
        "databricks_token": ws.admin_token,
        "APEV_JWT_SECRET": JWT_SECRET,
        "webhook_password": HOOK_PASSWORD,
        "timeout_grace_seconds": 0.0,
        "log_format": "console",
        "log_level": "ERROR",
        "delivery": DeliverySettings(retry_attempts=4, retry_timeout_seconds=30, retry_initial_wait_seconds=0.05),
        **over,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def jobs_stack(env: Env, ws: RunningWorkspace, clock: RunClock, **over: Any) -> AsyncIterator[JobsStack]:
    pg = await env.ensure_database()
    prefix = env.prefix("bj")
    await create_topics(env.bootstrap, [prefix + t for t in all_topics()], partitions=3)
    settings = jobs_settings(ws, env, pg, prefix, **over)
    app = create_app(settings)
    async with serve_app(app, settings.http_port):
        producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, enable_idempotence=True, linger_ms=5)
        await producer.start()
        stack = JobsStack(ws, clock, env, prefix, settings, app.state.service, producer)
        stop = asyncio.Event()
        reader = asyncio.create_task(_read_finished(stack, stop))
        try:
            yield stack
        finally:
            stop.set()
            await reader
            await producer.stop()


async def wait_until(what: str, check: Any, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        await asyncio.sleep(every)
