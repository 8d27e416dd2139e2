"""One local workspace, one MCP simulator and one ingest service (in-process, under uvicorn, so MCP can post
its webhooks) per test module, on the session's real Kafka and PostgreSQL; a reader of `job.requested` and
of the dead-letter topic."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from databricks.sdk import WorkspaceClient
from sqlalchemy import select

from apev_contracts import DatasourceCreated
from apev_contracts.envelope import CloudEvent, decode, encode, new_event
from apev_contracts.topics import all_topics
from apev_ingest import tables
from apev_ingest.app import create_app
from apev_ingest.service import IngestService
from apev_ingest.settings import Settings
from apev_mcpsim.testing import RunningMcp, running_mcp
from apev_runtime.auth import mint_token
from apev_runtime.db.tables import inbox
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, no_databricks_env, serve_app
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace, running_workspace

JWT_SECRET = "ingest-tests-secret-0123456789abcdef0123456789"
HOOK_SECRET = "mcp-hook-s3cret"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(autouse=True, scope="module")
def _no_databricks_env() -> Iterator[None]:
    with no_databricks_env():
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, _no_databricks_env: None) -> Iterator[RunningWorkspace]:
    with running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws:
        w = ws.client()
        # a locked-down workspace: nobody but admins may use the warehouse until ingest grants CAN_USE
        wid = str(next(iter(w.warehouses.list())).id)
        w.warehouses.set_permissions(wid, access_control_list=[])
        yield ws


@pytest.fixture(scope="module")
def mcp() -> Iterator[RunningMcp]:
    with running_mcp(locations=3, days=62, webhook_backoff=0.05, webhook_timeout=5.0) as sim:
        yield sim


@dataclass
class Stack:
    ws: RunningWorkspace
    mcp: RunningMcp
    bootstrap: str
    prefix: str
    settings: Settings
    service: IngestService
    base_url: str
    requested: list[CloudEvent[Any]] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None

    @property
    def w(self) -> WorkspaceClient:
        return self.ws.client()

    def token(self, tenant: str, roles: tuple[str, ...] = ("admin",)) -> str:
        return mint_token(JWT_SECRET, tenant_id=tenant, roles=list(roles))

    def http(self, tenant: str | None, roles: tuple[str, ...] = ("admin",)) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(tenant, roles)}"} if tenant else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def created(self, tenant: str, ds: str, system: str, entities: list[str], code: str) -> CloudEvent[Any]:
        payload = DatasourceCreated(
            tenant_id=tenant, datasource_id=ds, name=f"{system} of {tenant}", system=system,  # type: ignore[arg-type]
            entities=entities, mcp_tenant_code=code,
        )  # fmt: skip
        return new_event(payload, tenant_id=tenant, source="tests/ingest")

    async def send(self, *events: CloudEvent[Any]) -> None:
        for event in events:
            record = encode(event)
            await self.send_raw(record.topic, record.value, key=record.key, headers=record.headers)

    async def send_raw(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(self.prefix + topic, value, key=key, headers=headers or [])

    def requests_for(self, tenant: str, ds: str) -> list[CloudEvent[Any]]:
        return [e for e in self.requested if e.data.tenant_id == tenant and e.data.key == ds]

    async def handled(self, event_id: str, timeout: float = 90) -> None:
        """Wait until the datasource.created consumer's inbox holds `event_id` (it was handled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with self.service.db.engine.connect() as conn:
                row = (await conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == event_id))).first()
            if row is not None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"event {event_id} was not handled within {timeout}s")

    async def datasource(self, tenant: str, ds: str) -> Any:
        async with self.service.db.engine.connect() as conn:
            query = select(tables.datasources).where(
                tables.datasources.c.tenant_id == tenant, tables.datasources.c.datasource_id == ds
            )
            return (await conn.execute(query)).first()

    async def wait_requests(self, tenant: str, ds: str, count: int, timeout: float = 90) -> list[CloudEvent[Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests_for(tenant, ds)) < count:
            assert time.monotonic() < deadline, f"{tenant}/{ds}: {len(self.requests_for(tenant, ds))} job.requested"
            await asyncio.sleep(0.1)
        return self.requests_for(tenant, ds)

    def writes(self) -> dict[str, int]:
        return {k: v for k, v in self.ws.counters("/api/").items() if k.split(" ")[0] in WRITES}


async def _read(stack: Stack, stop: asyncio.Event) -> None:
    topics = [stack.prefix + "job.requested", stack.prefix + "datasource.created.dlq"]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.topic.endswith(".dlq"):
                        stack.dead.append(r)
                    else:
                        stack.requested.append(decode(r.value, list(r.headers), topic="job.requested"))
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[IngestService]:
    app = create_app(settings)
    async with serve_app(app, settings.http_port):
        yield app.state.service


@pytest.fixture(scope="module")
def ingest_overrides() -> dict[str, Any]:
    """Settings a test module adds to its service (override this fixture in the module)."""
    return {}


@pytest.fixture(scope="module")
async def stack(
    workspace: RunningWorkspace,
    mcp: RunningMcp,
    kafka_bootstrap: str,
    pg_url: str,
    tmp_path_factory: Any,
    ingest_overrides: dict[str, Any],
) -> AsyncIterator[Stack]:
    prefix = f"i{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    port = free_port()
    tenants = tmp_path_factory.mktemp("cfg") / "tenants.yaml"
    tenants.write_text("defaults:\n  freshness_minutes: 60\ntenants: {}\n")
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=prefix,
        database_url=pg_url,
        database_schema=prefix.rstrip(".") + "_ingest",
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        databricks_host=workspace.host,
        databricks_token=workspace.admin_token,
        MCP_BASE_URL=mcp.base_url,
        MCP_API_KEY=mcp.admin_key,
        APEV_JWT_SECRET=JWT_SECRET,
        mcp_webhook_secret=HOOK_SECRET,
        tenants_file=tenants,
        page_size=200,
        log_format="console",
        log_level="WARNING",
        delivery=DeliverySettings(
            retry_attempts=4, retry_timeout_seconds=30, retry_initial_wait_seconds=0.05, retry_max_wait_seconds=0.5
        ),
        **ingest_overrides,
    )  # type: ignore[call-arg]
    async with serve(settings) as service:
        s = Stack(workspace, mcp, kafka_bootstrap, prefix, settings, service, settings.public_url or "")
        s.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await s.producer.start()
        stop = asyncio.Event()
        reader = asyncio.create_task(_read(s, stop))
        try:
            yield s
        finally:
            stop.set()
            await reader
            await s.producer.stop()
