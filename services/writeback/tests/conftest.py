"""One writeback service per test module on real Kafka + PostgreSQL, the MCP simulator and the Slack stand-in.

Each test makes its own tenant (`stack.tenant(...)`: an MCP tenant, a Slack approvals webhook, an entry in
the tenant settings file) and publishes `insight.created` itself; `writeback.outcome` events and dead letters
are read back from the topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from apev_contracts import DatasourceCreated, InsightCreated
from apev_contracts.envelope import CloudEvent, decode, encode, new_event
from apev_contracts.topics import all_topics
from apev_mcpsim.testing import RunningMcp
from apev_runtime.auth import mint_token
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, serve_app
from apev_sinks.testing import RunningSinks
from apev_stack.kafka import free_port
from apev_writeback.app import create_app
from apev_writeback.service import WritebackService
from apev_writeback.settings import Settings

JWT_SECRET = "writeback-tests-secret-0123456789abcdef012345"
SIGNING_SECRET = "slack-signing-secret-for-writeback-tests"
APPROVER = "U0APPROVER"


@dataclass
class Tenant:
    tenant_id: str
    code: str
    webhook: str  # Slack webhook path of its approvals channel
    approvers: list[str]


@dataclass
class Stack:
    bootstrap: str
    prefix: str
    settings: Settings
    mcp: RunningMcp
    sinks: RunningSinks
    tenants_file: Path
    service: WritebackService | None = None
    producer: AIOKafkaProducer | None = None
    outcomes: list[CloudEvent[Any]] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)
    _tenants: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def tenant(self, *, approvers: list[str] | None = None, code: bool = True, **policy: Any) -> Tenant:
        """A fresh tenant: its MCP tenant, Slack approvals webhook and tenant settings entry."""
        tenant_id = "t-" + secrets.token_hex(4)
        mcp_code = self.mcp.new_tenant("wb")
        path = f"T0APEV0000/B{secrets.token_hex(4).upper()}/approvals-{tenant_id}"
        self.sinks.backend.slack.register(path, f"#approvals-{tenant_id}")
        entry: dict[str, Any] = {
            "approvers": approvers if approvers is not None else [APPROVER],
            "approvals_webhook": self.sinks.urls.slack_webhook(path),
        }
        if code:
            entry["mcp_tenant_code"] = mcp_code
        if policy:
            entry["writeback_policy"] = policy
        self._tenants[tenant_id] = entry
        # Atomically, as an operator should: a reader never sees a half-written file.
        staged = self.tenants_file.with_suffix(".tmp")
        staged.write_text(yaml.safe_dump({"defaults": {}, "tenants": self._tenants}))
        staged.replace(self.tenants_file)
        return Tenant(tenant_id, mcp_code, path, entry["approvers"])

    def insight(self, t: Tenant, entity_id: str = "E00001", **data: Any) -> CloudEvent[InsightCreated]:
        values: dict[str, Any] = {
            "tenant_id": t.tenant_id,
            "insight_id": "ins-" + uuid.uuid4().hex[:12],
            "agent_id": "retention-agent",
            "target_system": "adp",
            "entity_type": "employees",
            "entity_id": entity_id,
            "changes": {"RISK_FLAG": "HIGH", "REVIEW_STATUS": "pending", "REVIEW_DATE": "2026-12-01"},
            "reason": "Overtime up 40% in 3 months",
            "confidence": 0.92,
            **data,
        }
        return new_event(InsightCreated.model_validate(values), tenant_id=t.tenant_id, source="tests/writeback")

    def datasource(self, t: Tenant) -> CloudEvent[DatasourceCreated]:
        payload = DatasourceCreated(
            tenant_id=t.tenant_id, datasource_id="ds-adp", name="ADP", system="adp", entities=["employees"],
            mcp_tenant_code=t.code,
        )  # fmt: skip
        return new_event(payload, tenant_id=t.tenant_id, source="tests/writeback")

    async def send(self, *events: CloudEvent[Any]) -> None:
        assert self.producer is not None
        for event in events:
            record = encode(event)
            await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)
        await self.producer.flush()

    def token(self, t: Tenant | str, roles: list[str] | None = None, subject: str = "dana@example.com") -> str:
        tenant_id = t if isinstance(t, str) else t.tenant_id
        return mint_token(JWT_SECRET, tenant_id=tenant_id, roles=roles or ["admin"], subject=subject)

    def http(self, t: Tenant | str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token(t, **kw)}"} if t is not None else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def changes(self, t: Tenant) -> list[dict[str, Any]]:
        """Write-backs the simulator applied for the tenant (one per Idempotency-Key, by its contract)."""
        return [c for c in list(self.mcp.backend.changes) if c["tenant_code"] == t.code]

    def messages(self, t: Tenant) -> list[Any]:
        return self.sinks.backend.slack.messages(t.webhook)

    def outcomes_of(self, insight_id: str) -> list[str]:
        return [e.data.outcome for e in self.outcomes if e.data.insight_id == insight_id]

    async def audit(self, t: Tenant, insight_id: str) -> dict[str, Any]:
        async with self.http(t) as http:
            r = await http.get(f"/api/v1/writeback/insights/{insight_id}/audit")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def state(self, t: Tenant, insight_id: str) -> str | None:
        async with self.http(t) as http:
            r = await http.get(f"/api/v1/writeback/insights/{insight_id}")
        return r.json()["insight"]["state"] if r.status_code == 200 else None


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 30, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _read(stack: Stack, stop: asyncio.Event) -> None:
    topics = [stack.prefix + "writeback.outcome", stack.prefix + "insight.created.dlq"]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.topic.endswith(".dlq"):
                        stack.dead.append(r)
                    else:
                        stack.outcomes.append(decode(r.value, list(r.headers), topic="writeback.outcome"))
    finally:
        await consumer.stop()


def writeback_settings(
    mcp: RunningMcp, bootstrap: str, pg_url: str, prefix: str, tenants_file: Path, **over: Any
) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic_prefix": prefix,
        "database_url": pg_url,
        "database_schema": prefix.rstrip(".") + "_writeback",
        "http_port": over.pop("http_port", None) or free_port(),
        "MCP_BASE_URL": mcp.base_url,
        "MCP_API_KEY": mcp.admin_key,
        "APEV_JWT_SECRET": JWT_SECRET,
        "slack_signing_secret": SIGNING_SECRET,
        "tenants_file": tenants_file,
        "mcp_attempts": 4,
        "mcp_retry_timeout_seconds": 5.0,
        "mcp_wait_initial_seconds": 0.02,
        "breaker_failures": 4,
        "breaker_cool_down_seconds": 1.0,
        "resume_interval_seconds": 0.5,
        "resume_after_seconds": 2.0,
        "log_format": "console",
        "log_level": "WARNING",
        "delivery": DeliverySettings(
            retry_attempts=3,
            retry_timeout_seconds=10,
            retry_initial_wait_seconds=0.05,
            retry_max_wait_seconds=0.3,
            breaker_pause_seconds=1.0,
        ),
        **over,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def serve_writeback(settings: Settings) -> AsyncIterator[WritebackService]:
    app = create_app(settings)
    async with serve_app(app, settings.http_port):
        yield app.state.service


@contextlib.asynccontextmanager
async def open_stack(
    mcp: RunningMcp, sinks: RunningSinks, bootstrap: str, pg_url: str, tmp: Path, *, serve: bool = True
) -> AsyncIterator[Stack]:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    await create_topics(bootstrap, [prefix + t for t in all_topics()], partitions=2)
    tenants_file = tmp / "tenants.yaml"
    tenants_file.write_text("defaults: {}\ntenants: {}\n")
    settings = writeback_settings(mcp, bootstrap, pg_url, prefix, tenants_file)
    stack = Stack(bootstrap, prefix, settings, mcp, sinks, tenants_file)
    stack.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await stack.producer.start()
    stop = asyncio.Event()
    reader = asyncio.create_task(_read(stack, stop))
    try:
        if serve:
            sinks.interactivity(f"{stack.base_url}/slack/interactions", SIGNING_SECRET)
            async with serve_writeback(settings) as service:
                stack.service = service
                yield stack
        else:
            yield stack
    finally:
        stop.set()
        await reader
        await stack.producer.stop()


@pytest.fixture(scope="module")
async def stack(
    mcp_sim: RunningMcp, alert_sinks_server: RunningSinks, kafka_bootstrap: str, pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:  # fmt: skip
    async with open_stack(
        mcp_sim, alert_sinks_server, kafka_bootstrap, pg_url, tmp_path_factory.mktemp("writeback")
    ) as s:
        yield s
