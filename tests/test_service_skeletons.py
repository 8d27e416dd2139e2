"""Each of the five services starts, reports ready, consumes a valid event of each of its topics through
the delivery middleware (visible as its inbox row), and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.examples import example_payloads
from apev_contracts.registry import spec_for_model
from apev_contracts.topics import all_topics
from apev_runtime.db.engine import create_database
from apev_runtime.db.tables import inbox
from apev_stack.kafka import create_topics, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

SERVICES = {
    "ingest": ["datasource.created", "run.finished"],
    "jobs": ["job.requested"],
    "serving": ["run.finished", "endpoint.scale.requested"],
    "writeback": ["insight.created", "datasource.created"],
    "monitor": ["run.finished", "cost.sampled", "serving.latency.sampled"],
}


@pytest.fixture(scope="module")
def lifecycles(kafka_bootstrap: str, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The five lifecycles run side by side (each on its own topics, schema and port; most of a lifecycle is
    waiting: start-up, the group join, shutdown): each service's outcome, None or what it raised."""

    async def every() -> list[BaseException | None]:
        return await asyncio.gather(
            *(_lifecycle(s, kafka_bootstrap, pg_url, tmp_path_factory.mktemp(s)) for s in sorted(SERVICES)),
            return_exceptions=True,
        )

    return dict(zip(sorted(SERVICES), asyncio.run(every()), strict=True))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_skeleton_lifecycle(service: str, lifecycles: dict[str, Any]) -> None:
    if isinstance(lifecycles[service], BaseException):
        raise lifecycles[service]


async def _lifecycle(service: str, kafka_bootstrap: str, pg_url: str, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    port, schema, env_prefix = free_port(), f"{prefix.rstrip('.')}_{service}", service.upper()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        f"{env_prefix}_DATABASE_URL": pg_url,
        f"{env_prefix}_DATABASE_SCHEMA": schema,
        f"{env_prefix}_HTTP_PORT": str(port),
        f"{env_prefix}_LOG_FORMAT": "json",
    }
    workspace = contextlib.ExitStack()
    if service in ("ingest", "jobs", "serving"):  # they need a workspace (jobs writes the job the example asks for)
        from apev_workspace.testing import running_workspace

        ws = workspace.enter_context(running_workspace(tmp_path / "ws"))
        env |= {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.admin_token, "JOBS_PUBLIC_URL": "http://127.0.0.1:9"}
    if service == "ingest":  # it provisions the example's data source for real (the simulator knows `acme`)
        from apev_mcpsim.testing import running_mcp

        mcp = workspace.enter_context(running_mcp())
        env |= {"MCP_BASE_URL": mcp.base_url, "MCP_API_KEY": mcp.admin_key}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"apev_{service}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = bytearray()

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            output.extend(chunk)

    pumping = asyncio.create_task(pump())
    db = create_database(pg_url, schema)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            await _until_ready(http, proc, output)
            assert (await http.get("/healthz")).json()["service"] == service
            assert "process_cpu_seconds_total" in (await http.get("/metrics")).text

            events = [_example(topic) for topic in SERVICES[service]]
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
            await producer.start()
            try:
                for event in events:
                    record = encode(event)
                    await producer.send_and_wait(
                        prefix + record.topic, record.value, key=record.key, headers=record.headers
                    )
            finally:
                await producer.stop()
            ids = {e.id for e in events}
            async with asyncio.timeout(60):
                while True:
                    async with db.engine.connect() as conn:
                        seen = set((await conn.execute(select(inbox.c.event_id))).scalars())
                    if ids <= seen:
                        break
                    await asyncio.sleep(0.2)
            metrics = (await http.get("/metrics")).text
            assert 'apev_delivery_messages_total{consumer="apev-' in metrics and 'outcome="processed"' in metrics
            assert "faststream_received_messages_total" in metrics  # FastStream's own middleware metrics

        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once shutdown is complete, so a clean stop exits "killed by SIGTERM".
        assert await asyncio.wait_for(proc.wait(), 60) in (0, -signal.SIGTERM), output.decode()[-3000:]
        await pumping
        text = output.decode()
        assert "service_stopped" in text and "Application shutdown complete" in text
        assert "Traceback" not in text
        for event in events:
            assert event.id in text  # its handler logged it
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await db.dispose()
        workspace.close()


def example_event(topic: str) -> CloudEvent[Any]:
    """A fresh event (new id) carrying the contracts' example payload for `topic`."""
    (payload,) = [p for m, p in example_payloads().items() if spec_for_model(m).topic == topic]
    return new_event(payload, tenant_id=payload.tenant_id, source="tests/skeletons")  # type: ignore[attr-defined]


async def _until_ready(http: httpx.AsyncClient, proc: asyncio.subprocess.Process, output: bytearray) -> None:
    async with asyncio.timeout(60):
        while True:
            assert proc.returncode is None, f"service exited: {output.decode()[-3000:]}"
            try:
                r = await http.get("/readyz")
                if r.status_code == 200:
                    assert r.json()["checks"].keys() >= {"database", "broker"}
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


def _example(topic: str) -> CloudEvent[Any]:
    event = example_event(topic)
    if topic == "datasource.created":  # entity names as the MCP simulator spells them
        data = event.data.model_copy(update={"entities": ["employees", "payroll_runs"]})
        event = event.model_copy(update={"data": data})
    return event
