"""One local workspace, one jobs service (in-process, under uvicorn, so the workspace can post its webhooks)
and one reader of `run.finished` per test module, on the session's real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.topics import all_topics
from apev_jobs import tables
from apev_jobs.app import create_app
from apev_jobs.service import JobsService
from apev_jobs.settings import Settings
from apev_runtime.auth import mint_token
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, no_databricks_env, serve_app
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace, running_workspace, upload

JWT_SECRET = "jobs-tests-secret-0123456789abcdef0123456789"
HOOK_PASSWORD = "hook-s3cret"
TASKS = "/Shared/jobs-tests"
CODE = {
    "ok.py": "print('fine')",
    "fail.py": "raise ValueError('boom')",
    "sleep.py": "import sys, time\ntime.sleep(float(sys.argv[1]))",
    "fail_once.py": (
        "import os, sys\nmarker = sys.argv[1]\n"
        "if not os.path.exists(marker):\n    open(marker, 'w').close()\n    raise SystemExit('first attempt fails')"
    ),
}


@pytest.fixture(autouse=True, scope="module")
def _no_databricks_env() -> Iterator[None]:
    with no_databricks_env():
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, _no_databricks_env: None) -> Iterator[RunningWorkspace]:
    with running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=8) as ws:
        ws.workspace.webhooks.retry_base = 0.2
        w = ws.client()
        for name, code in CODE.items():
            upload(w, f"{TASKS}/{name}", code)
        yield ws


def task(key: str, name: str = "ok.py", *params: str, **extra: Any) -> dict[str, Any]:
    return {"task_key": key, "python_task": {"python_file": f"{TASKS}/{name}", "parameters": list(params)}, **extra}


@dataclass
class Stack:
    ws: RunningWorkspace
    bootstrap: str
    pg_url: str
    prefix: str
    schema: str
    settings: Settings
    service: JobsService
    base_url: str
    finished: list[CloudEvent[Any]] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None

    def token(self, tenant: str = "acme", roles: tuple[str, ...] = ("engineer",)) -> str:
        return mint_token(JWT_SECRET, tenant_id=tenant, roles=list(roles))

    def http(self, tenant: str | None = "acme") -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(tenant)}"} if tenant else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def request(self, tenant: str = "acme", *, key: str | None = None, **data: Any) -> CloudEvent[JobRequested]:
        payload = JobRequested.model_validate({"tenant_id": tenant, "kind": "adhoc", "key": key or _key(), **data})
        return new_event(payload, tenant_id=tenant, source="tests/jobs")

    async def send(self, *events: CloudEvent[Any]) -> None:
        assert self.producer is not None
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        await self.producer.flush()

    async def request_row(self, request_id: str) -> Any:
        async with self.service.db.engine.connect() as conn:
            query = select(tables.requests).where(tables.requests.c.request_id == request_id)
            return (await conn.execute(query)).first()

    async def run_of(self, request_id: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = await self.request_row(request_id)
            if row is not None and row.state == "done" and row.run_id:
                return str(row.run_id)
            assert row is None or row.state != "failed", f"request failed: {row.error}"
            await asyncio.sleep(0.05)
        raise AssertionError(f"request {request_id} got no run within {timeout}s: {await self.request_row(request_id)}")

    def finished_for(self, run_id: str) -> list[CloudEvent[Any]]:
        return [e for e in self.finished if e.data.run_id == run_id]

    async def wait_finished(self, run_id: str, count: int = 1, timeout: float = 60) -> list[CloudEvent[Any]]:
        deadline = time.monotonic() + timeout
        while len(self.finished_for(run_id)) < count:
            assert time.monotonic() < deadline, f"run {run_id}: {len(self.finished_for(run_id))} run.finished"
            await asyncio.sleep(0.05)
        return self.finished_for(run_id)


def _key() -> str:
    return "t-" + uuid.uuid4().hex[:10]


async def _read_finished(stack: Stack, stop: asyncio.Event) -> None:
    from apev_contracts.envelope import decode

    consumer = AIOKafkaConsumer(
        stack.prefix + "run.finished", bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    stack.finished.append(decode(r.value, list(r.headers), topic="run.finished"))
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def serve_jobs(settings: Settings, **app_kwargs: Any) -> AsyncIterator[JobsService]:
    app = create_app(settings, **app_kwargs)
    async with serve_app(app, settings.http_port):
        yield app.state.service


def jobs_settings(ws: RunningWorkspace, bootstrap: str, pg_url: str, prefix: str, schema: str, **over: Any) -> Settings:
    port = over.pop("http_port", None) or free_port()
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg_url,
        "database_schema": schema,
        "http_port": port,
        "public_url": f"http://127.0.0.1:{port}",
        "databricks_host": ws.host,
        "databricks_token": ws.admin_token,
        "APEV_JWT_SECRET": JWT_SECRET,  # its validation alias: the field name is not accepted
        "webhook_password": HOOK_PASSWORD,
        "reconcile_interval_seconds": 1.0,
        "timeout_grace_seconds": 0.0,
        "log_format": "console",
        "log_level": "WARNING",
        "delivery": DeliverySettings(
            retry_attempts=4, retry_timeout_seconds=30, retry_initial_wait_seconds=0.05, retry_max_wait_seconds=0.5
        ),
        **over,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
async def stack(workspace: RunningWorkspace, kafka_bootstrap: str, pg_url: str) -> AsyncIterator[Stack]:
    prefix = f"j{uuid.uuid4().hex[:8]}."
    schema = prefix.rstrip(".") + "_jobs"
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    settings = jobs_settings(workspace, kafka_bootstrap, pg_url, prefix, schema)
    async with serve_jobs(settings) as service:
        s = Stack(workspace, kafka_bootstrap, pg_url, prefix, schema, settings, service, settings.public_url or "")
        s.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await s.producer.start()
        stop = asyncio.Event()
        reader = asyncio.create_task(_read_finished(s, stop))
        try:
            yield s
        finally:
            stop.set()
            await reader
            await s.producer.stop()


def counted(ws: RunningWorkspace, prefix: str = "/api/") -> dict[str, int]:
    return {k: v for k, v in ws.counters(prefix).items() if "/__admin" not in k}


Waiter = Callable[[], Awaitable[bool]]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def here() -> Path:
    return Path(__file__).parent
