"""The services as the operator runs them (`python -m apev_<service>`), on the suite's Kafka and PostgreSQL, next
to in-process stand-ins; and what each one's events do where the effect lands, so a fault test can count it.

`Target` knows one service: its settings (environment), a stream of events and the effects they leave (jobs in
the workspace, changes in the MCP simulator, rows in the service's schema), counted per event. `ServiceProcess`
starts, SIGKILLs and restarts one replica under a stable `KAFKA_GROUP_INSTANCE_ID` (static membership).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apev_contracts import DatasourceCreated, InsightCreated, JobRequested, RunFinished, ServingLatencySampled, naming
from apev_contracts.envelope import CloudEvent, decode, encode, new_event
from apev_contracts.errors import ContractError
from apev_contracts.examples import example_payloads
from apev_contracts.topics import all_topics
from apev_runtime.testing import create_topics
from apev_stack.kafka import free_port

JWT_SECRET = "faults-jwt-secret-0123456789abcdef0123456789"
HOOK_PASSWORD = "faults-hook-password"
SIGNING_SECRET = "faults-slack-signing-secret"
TENANT = "faults-dental"


@dataclass
class ServiceProcess:
    """One replica of a service in its own process; its output is kept line by line (for the log scan)."""

    name: str
    env: dict[str, str]
    log: list[str]
    proc: asyncio.subprocess.Process | None = None
    _pump: asyncio.Task[None] | None = None
    own: list[str] = field(default_factory=list)
    """This replica's lines only (`log` is shared by the suite)."""

    @property
    def port(self) -> int:
        return int(self.env[f"{self.name.upper()}_HTTP_PORT"])

    async def start(self, timeout: float = 180.0) -> float:
        """Start and wait until `/readyz` answers 200; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"apev_{self.name}", env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self._pump = asyncio.create_task(self._read(self.proc))
        answer = "no answer"
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if self.proc.returncode is not None:
                    tail = "\n".join(self.own[-30:])
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
                try:
                    ready = await http.get(f"http://127.0.0.1:{self.port}/readyz")
                    if ready.status_code == 200:
                        return time.monotonic() - t0
                    answer = f"{ready.status_code} {ready.text[:500]}"
                except httpx.HTTPError as exc:
                    answer = repr(exc)
                if time.monotonic() - t0 > timeout:
                    tail = "\n".join(self.own[-30:])
                    raise AssertionError(f"{self.name} not ready after {timeout:.0f} s ({answer}):\n{tail}")
                await asyncio.sleep(0.2)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            decoded = line.decode("utf-8", "replace").rstrip()
            self.log.append(decoded)
            self.own.append(decoded)

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is committed that was not already."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            assert await self.proc.wait() == -signal.SIGKILL
        if self._pump is not None:
            await self._pump

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 40)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._pump is not None:
            await self._pump


@dataclass
class Stand:
    """What every target shares: the broker, the database, the stand-ins, a topic prefix and a producer."""

    bootstrap: str
    pg_url: str
    tmp: Path
    workspace: Any
    mcp: Any
    sinks: Any
    log: list[str]
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:8]}.")
    producer: AIOKafkaProducer | None = None
    engine: AsyncEngine | None = None

    async def open(self) -> None:
        await create_topics(self.bootstrap, [self.prefix + t for t in all_topics()], partitions=3)
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, linger_ms=5)
        await self.producer.start()
        self.engine = create_async_engine(self.pg_url, pool_pre_ping=True)  # outlives a database restart

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.engine is not None:
            await self.engine.dispose()

    async def send(self, event: CloudEvent[Any]) -> None:
        assert self.producer is not None
        record = encode(event)
        await self.producer.send(self.prefix + record.topic, record.value, key=record.key, headers=record.headers)

    async def scalar(self, sql: str) -> Any:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar_one()

    async def pairs(self, sql: str) -> Counter[str]:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            return Counter({str(r[0]): int(r[1]) for r in await conn.execute(text(sql))})

    async def published(self, topic: str) -> list[CloudEvent[Any]]:
        """Every event on one of the stand's topics so far (each partition read to its end offset, no group)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            assert self.producer is not None
            name = self.prefix + topic
            parts = [TopicPartition(name, p) for p in sorted(await self.producer.partitions_for(name))]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            out: list[CloudEvent[Any]] = []
            while [p for p in parts if await consumer.position(p) < ends[p]]:
                batch = await consumer.getmany(*parts, timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        try:
                            out.append(decode(r.value or b"", list(r.headers), topic=topic))
                        except ContractError:
                            continue  # not an event of ours (a poison test's record): no effect to count
            return out
        finally:
            await consumer.stop()

    def replica(self, target: Target, index: int = 0) -> ServiceProcess:
        return ServiceProcess(target.name, target.env(self, index), self.log)


class Target:
    """One service under faults: how to run it, what to send it, and how to count what its events did."""

    name: str
    topic: str

    def schema(self, stand: Stand) -> str:
        return stand.prefix.rstrip(".") + "_" + self.name

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        up = self.name.upper()
        port = free_port()
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MCP_", "KAFKA_", up))}
        return {
            **keep,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": stand.bootstrap,
            "KAFKA_TOPIC_PREFIX": stand.prefix,
            "KAFKA_GROUP_INSTANCE_ID": f"{self.name}-{index}",
            "APEV_JWT_SECRET": JWT_SECRET,
            f"{up}_DATABASE_URL": stand.pg_url,
            f"{up}_DATABASE_SCHEMA": self.schema(stand),
            f"{up}_HTTP_PORT": str(port),
            f"{up}_PUBLIC_URL": f"http://127.0.0.1:{port}",
            f"{up}_DATA_DIR": str(stand.tmp / f"{self.name}-{index}"),
            f"{up}_LOG_FORMAT": "json",
            f"{up}_LOG_LEVEL": "WARNING",
            "DELIVERY_RETRY_INITIAL_WAIT_SECONDS": "0.05",
            "DELIVERY_RETRY_MAX_WAIT_SECONDS": "0.5",
        }

    async def prepare(self, stand: Stand) -> None:
        """Whatever the events need to exist first (tenants, files)."""

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        """The i-th event of a stream, and the key its effect is counted by."""
        raise NotImplementedError

    async def progress(self, stand: Stand) -> int:
        """How many events have had their effect so far (cheap: polled while the stream runs)."""
        raise NotImplementedError

    async def effects(self, stand: Stand) -> Counter[str]:
        """Effects where they land, per counting key."""
        raise NotImplementedError


class Monitor(Target):
    """`serving.latency.sampled` -> one `monitor_latency` row per event."""

    name, topic = "monitor", "serving.latency.sampled"

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        tenants = stand.tmp / "monitor-tenants.yaml"
        tenants.write_text("defaults: {}\ntenants: {}\n")
        return {**super().env(stand, index), "MONITOR_TENANTS_FILE": str(tenants)}

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        sample = example_payloads()[ServingLatencySampled].model_copy(
            update={"tenant_id": TENANT, "endpoint_name": f"ep-{i % 5}"}
        )
        event = new_event(sample, tenant_id=TENANT, source="tests/faults")
        return event.id, event

    async def progress(self, stand: Stand) -> int:
        return int(await stand.scalar(f'SELECT count(*) FROM "{self.schema(stand)}".monitor_latency'))  # noqa: S608

    async def effects(self, stand: Stand) -> Counter[str]:
        return await stand.pairs(
            f'SELECT event_id, count(*) FROM "{self.schema(stand)}".monitor_latency GROUP BY event_id'  # noqa: S608
        )


class Jobs(Target):
    """`job.requested` (a job spec) -> one Databricks job in the workspace, named after the request's key; a
    duplicate effect is a second job of the same name (job creation has no idempotency token)."""

    name, topic = "jobs", "job.requested"
    tasks = "/Shared/faults"
    tenant = TENANT

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        return {
            **super().env(stand, index),
            "DATABRICKS_HOST": stand.workspace.host,
            "DATABRICKS_TOKEN": stand.workspace.admin_token,
            "JOBS_WEBHOOK_PASSWORD": HOOK_PASSWORD,
        }

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        key = f"f{i}-{secrets.token_hex(3)}"
        spec = {"tasks": [{"task_key": "t", "python_task": {"python_file": f"{self.tasks}/ok.py"}}]}
        payload = JobRequested.model_validate({"tenant_id": self.tenant, "kind": "adhoc", "key": key, "job": spec})
        return payload.job_name, new_event(payload, tenant_id=self.tenant, source="tests/faults")

    async def progress(self, stand: Stand) -> int:
        return int(
            await stand.scalar(
                f"SELECT count(*) FROM \"{self.schema(stand)}\".jobs_requests WHERE state = 'done'"  # noqa: S608
            )
        )

    async def effects(self, stand: Stand) -> Counter[str]:
        w = stand.workspace.client()
        names = await asyncio.to_thread(lambda: [j.settings.name for j in w.jobs.list() if j.settings])
        return Counter(n for n in names if n and n.startswith(f"ap:{TENANT}:adhoc:"))


class Writeback(Target):
    """`insight.created` (auto-applied) -> one change in the MCP simulator, counted by Idempotency-Key and checked
    against the rows' VERSION (a second apply under another key would show there). `tenants` > 1 spreads the
    stream over several keys (partitions), so replicas share it."""

    name, topic = "writeback", "insight.created"

    def __init__(self, tenants: int = 1) -> None:
        self.tenants = [TENANT] if tenants == 1 else [f"{TENANT}-{n}" for n in range(tenants)]
        self.codes: dict[str, str] = {}

    async def prepare(self, stand: Stand) -> None:
        entries = {}
        for tenant in self.tenants:
            self.codes[tenant] = await asyncio.to_thread(stand.mcp.new_tenant, "fk")
            path = f"T0APEV0000/B{secrets.token_hex(4).upper()}/faults-approvals"
            stand.sinks.backend.slack.register(path, "#faults-approvals")
            entries[tenant] = {
                "mcp_tenant_code": self.codes[tenant],
                "approvers": ["U0FAULTS"],
                "approvals_webhook": stand.sinks.urls.slack_webhook(path),
            }
        (stand.tmp / "writeback-tenants.yaml").write_text(yaml.safe_dump({"defaults": {}, "tenants": entries}))

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        return {
            **super().env(stand, index),
            "MCP_BASE_URL": stand.mcp.base_url,
            "MCP_API_KEY": stand.mcp.admin_key,
            "WRITEBACK_TENANTS_FILE": str(stand.tmp / "writeback-tenants.yaml"),
            "WRITEBACK_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "WRITEBACK_MCP_WAIT_INITIAL_SECONDS": "0.02",
        }

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        tenant = self.tenants[i % len(self.tenants)]
        values = {
            "tenant_id": tenant,
            "insight_id": f"ins-{i}-{secrets.token_hex(4)}",
            "agent_id": "retention-agent",
            "target_system": "adp",
            "entity_type": "employees",
            "entity_id": f"E{1 + i % 150:05d}",
            "changes": {"REVIEW_NOTE": f"note {i}"},
            "reason": "fault suite",
            "confidence": 0.95,
        }
        payload = InsightCreated.model_validate(values)
        return payload.insight_id, new_event(payload, tenant_id=tenant, source="tests/faults")

    def _changes(self, stand: Stand) -> list[dict[str, Any]]:
        codes = set(self.codes.values())
        return [c for c in list(stand.mcp.backend.changes) if c["tenant_code"] in codes]

    async def progress(self, stand: Stand) -> int:
        return len(self._changes(stand))

    async def effects(self, stand: Stand) -> Counter[str]:
        changes = self._changes(stand)
        counts = Counter(str(c["idempotency_key"]) for c in changes)
        for code in self.codes.values():
            per_entity = Counter(c["entity_id"] for c in changes if c["tenant_code"] == code)
            rows = stand.mcp.backend.table(code, "employees").rows
            for entity, n in per_entity.items():  # applied more often than recorded: a duplicate under another key
                extra = int(rows[entity]["VERSION"]) - 1 - n
                if extra > 0:
                    counts[f"version-drift:{code}:{entity}"] += extra + 1
        return counts


INGEST_TENANT, SERVING_TENANT = f"{TENANT}-ingest", f"{TENANT}-serving"


def _tenants(base: str, n: int) -> list[str]:
    return [base] if n == 1 else [f"{base}-{k}" for k in range(n)]


class Ingest(Target):
    """`datasource.created` -> the data source provisioned (once per tenant: catalog, schemas, volume, principals,
    grants, warehouse, MCP tenant and secret scope; per data source: its MCP integration and task files) and its
    first ingestion run requested: one `job.requested` (kind `ingest`, key = the data source) through the outbox.
    Counted per data source on the `job.requested` topic by distinct event id (a copy under the same id is one
    request to the jobs service; a second id would be a second run), and only where the MCP simulator holds the
    data source's integration. `tenants` > 1 spreads the stream over several keys (partitions).

    A stand that also runs the jobs service would run these ingestion jobs for real (heavy): keep them apart."""

    name, topic = "ingest", "datasource.created"

    def __init__(self, tenants: int = 1, base: str = INGEST_TENANT) -> None:
        self.tenants = _tenants(base, tenants)
        self.codes: dict[str, str] = {}
        self.tag = secrets.token_hex(3)

    async def prepare(self, stand: Stand) -> None:
        for tenant in self.tenants:
            self.codes[tenant] = await asyncio.to_thread(stand.mcp.new_tenant, "fi")
        entries = {t: {"mcp_tenant_code": code} for t, code in self.codes.items()}
        self._file(stand).write_text(yaml.safe_dump({"defaults": {"freshness_minutes": 60}, "tenants": entries}))

    def _file(self, stand: Stand) -> Path:
        return stand.tmp / "ingest-tenants.yaml"

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        if not self._file(stand).exists():
            self._file(stand).write_text("defaults: {}\ntenants: {}\n")
        return {
            **super().env(stand, index),
            "DATABRICKS_HOST": stand.workspace.host,
            "DATABRICKS_TOKEN": stand.workspace.admin_token,
            "MCP_BASE_URL": stand.mcp.base_url,
            "MCP_API_KEY": stand.mcp.admin_key,
            "INGEST_TENANTS_FILE": str(self._file(stand)),
            "INGEST_CREDENTIAL_CHECK_SECONDS": "3600",
        }

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        tenant = self.tenants[i % len(self.tenants)]
        ds = f"ds-{self.tag}-{i}"
        payload = DatasourceCreated(
            tenant_id=tenant, datasource_id=ds, name=f"faults {i}", system="adp", entities=["employees"],
            mcp_tenant_code=self.codes.get(tenant, "default"),
        )  # fmt: skip
        return ds, new_event(payload, tenant_id=tenant, source="tests/faults")

    async def progress(self, stand: Stand) -> int:
        table = f'"{self.schema(stand)}".ingest_datasources'
        return int(
            await stand.scalar(
                f"SELECT count(*) FROM {table} WHERE state IN ('job_requested', 'first_run_finished') "  # noqa: S608
                f"AND datasource_id LIKE 'ds-{self.tag}-%'"
            )
        )

    async def effects(self, stand: Stand) -> Counter[str]:
        """Per data source: distinct `job.requested` ids of its first run (0 when MCP has no integration for it).
        Waits (30 s at most) for the relay to publish what the service recorded."""
        deadline = time.monotonic() + 30
        while True:
            requests = {
                e.id: e.data.key
                for e in await stand.published("job.requested")
                if e.data.kind == "ingest"
                and e.data.tenant_id in self.tenants
                and e.data.key.startswith(f"ds-{self.tag}-")
            }
            if len(set(requests.values())) >= await self.progress(stand) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        codes = set(self.codes.values())
        registered = {i.datasource_id for i in list(stand.mcp.backend.integrations.values()) if i.tenant_code in codes}
        return Counter(ds for ds in requests.values() if ds in registered)


class Serving(Target):
    """`run.finished` of an agent's successful insights run -> one `insight.created` per new row of the tenant's
    `gold.agent_insights` (read as the tenant's reader principal, through the outbox; the row recorded in
    `serving_insights`). Event i is agent `<tag>-i`'s run and that agent has one row, so each event has one
    effect: counted per insight id on the `insight.created` topic by distinct event id.

    `prepare` lays out what ingest and agent registration would have: the tenant's catalog with a gold schema, its
    reader principal with ingest's grants (USE_CATALOG; USE_SCHEMA, SELECT on gold), `gold.agent_insights` with
    one row per agent (`size` agents) and `gold.monthly_kpis`, and the agents' rows in the service's schema
    (migrated first, the service's own table definitions). Insights are held (confidence 0.3) so a write-back
    in the same stand only holds them."""

    name, topic = "serving", "run.finished"

    def __init__(self, tenants: int = 1, size: int = 5000, base: str = SERVING_TENANT) -> None:
        self.tenants = _tenants(base, tenants)
        self.size = size
        self.tag = f"fa{secrets.token_hex(3)}"

    def env(self, stand: Stand, index: int) -> dict[str, str]:
        return {
            **super().env(stand, index),
            "DATABRICKS_HOST": stand.workspace.host,
            "DATABRICKS_TOKEN": stand.workspace.admin_token,
            "SERVING_REPLICA_ID": f"faults-{index}",
            "SERVING_LATENCY_WINDOW_SECONDS": "3600",
        }

    def agent(self, i: int) -> tuple[str, str]:
        """(tenant, agent id) of event i."""
        return self.tenants[i % len(self.tenants)], f"{self.tag}-{i}"

    async def prepare(self, stand: Stand) -> None:
        w = stand.workspace.client()
        for n, tenant in enumerate(self.tenants):
            ids = range(n, self.size, len(self.tenants))
            await asyncio.to_thread(lay_out_tenant_sql, w, tenant, self.tag, ids)
        await self._agent_rows(stand)

    async def _agent_rows(self, stand: Stand) -> None:
        from apev_runtime.db import migrate
        from apev_runtime.db.engine import create_database
        from apev_serving import tables as serving_tables
        from apev_serving.app import MIGRATIONS

        db = create_database(stand.pg_url, self.schema(stand))
        try:
            await migrate.upgrade(db, [MIGRATIONS])
            now = datetime.now(UTC)
            rows = []
            for i in range(self.size):
                tenant, agent = self.agent(i)
                catalog = naming.catalog_name(tenant)
                rows.append({
                    "agent_id": agent, "tenant_id": tenant, "name": f"faults agent {i}",
                    "model_name": f"{catalog}.agents.{agent.replace('-', '_')}", "model_source": "/Shared/faults/m.py",
                    "tables": ["gold.agent_insights"], "chat_endpoint": "apev-local-chat",
                    "config": {"agent_id": agent, "catalog": catalog, "tables": ["gold.agent_insights"]},
                    "endpoint_name": f"agent-{agent}", "principal": naming.agent_principal(agent),
                    "workload_size": "Small", "scale_to_zero": True, "state": "serving",
                    "created_at": now, "updated_at": now,
                })  # fmt: skip
            async with db.transaction() as tx:
                await tx.execute(serving_tables.agents.insert(), rows)
        finally:
            await db.dispose()

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        if i >= self.size:
            raise ValueError(f"event {i}: this target prepared {self.size} agents (Serving(size=...))")
        tenant, agent = self.agent(i)
        run_id = str(10**9 + i)
        finished = RunFinished.model_validate({
            "tenant_id": tenant, "job_id": "4242", "run_id": run_id, "kind": "agent-insights", "key": agent,
            "job_name": naming.job_name(tenant, "agent-insights", agent),
            "tags": {"ap_tenant_id": tenant, "ap_kind": "agent-insights", "ap_agent_id": agent},
            "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
            "status": {"state": "TERMINATED"}, "outcome": "success",
            "start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T00:05:00Z",
        })  # fmt: skip
        return f"ins-{agent}", new_event(finished, tenant_id=tenant, source="tests/faults")

    async def progress(self, stand: Stand) -> int:
        table = f'"{self.schema(stand)}".serving_insights'
        return int(await stand.scalar(f"SELECT count(*) FROM {table} WHERE agent_id LIKE '{self.tag}-%'"))  # noqa: S608

    async def effects(self, stand: Stand) -> Counter[str]:
        """Per insight: distinct `insight.created` ids (waits 30 s at most for the relay to catch up)."""
        deadline = time.monotonic() + 30
        while True:
            created = {
                e.id: e.data.insight_id
                for e in await stand.published("insight.created")
                if e.data.agent_id.startswith(f"{self.tag}-")
            }
            if len(set(created.values())) >= await self.progress(stand) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        return Counter(created.values())


def warehouse_sql(w: Any, statement: str) -> list[list[Any]]:
    """One statement as the workspace admin on its first warehouse; its rows."""
    from databricks.sdk.service import sql as dbsql

    wh = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")
    if done.status is None or done.status.state != dbsql.StatementState.SUCCEEDED:
        raise AssertionError(f"{statement[:200]}: {done.status}")
    return [list(r) for r in (done.result.data_array or [])] if done.result else []


def lay_out_tenant_sql(w: Any, tenant: str, tag: str, agents: range | list[int]) -> None:
    """What ingest (catalog, schemas, the reader principal and its grants) and the pipeline (gold tables) leave
    for serving: `gold.monthly_kpis` (four rows naming the tenant) and `gold.agent_insights` with one held
    insight per agent `<tag>-<i>`. Get-or-create, so a second target in the same workspace adds its rows."""
    from databricks.sdk.service import catalog as uc

    from apev_pipeline.agents import insights_table_ddl

    cat = naming.catalog_name(tenant)
    warehouse_sql(w, f"CREATE CATALOG IF NOT EXISTS {cat}")
    for schema in ("bronze", "silver", "gold"):
        warehouse_sql(w, f"CREATE SCHEMA IF NOT EXISTS {cat}.{schema}")
    warehouse_sql(w, insights_table_ddl(cat))
    warehouse_sql(
        w,
        f"CREATE TABLE IF NOT EXISTS {cat}.gold.monthly_kpis AS SELECT "  # noqa: S608 - our own names
        f"concat('{tenant}-loc-', CAST(id AS STRING)) AS practice_location, "
        "CAST(1000 * (id + 1) AS BIGINT) AS visits FROM range(4)",
    )
    ids = list(agents)
    if ids:
        values = ", ".join(f"({i})" for i in ids)
        warehouse_sql(
            w,
            f"INSERT INTO {cat}.gold.agent_insights SELECT concat('ins-{tag}-', CAST(i AS STRING)), "  # noqa: S608
            f"concat('{tag}-', CAST(i AS STRING)), '1', 'anomaly', 'adp', 'employees', "
            "concat('E', lpad(CAST(1 + i % 150 AS STRING), 5, '0')), '{\"REVIEW_NOTE\": \"faults\"}', "
            "'fault suite', 0.3, true, CAST('2026-03-01 00:00:00' AS TIMESTAMP) "
            f"FROM (VALUES {values}) AS v(i)",
        )
    name = naming.reader_principal(tenant)
    found = [sp for sp in w.service_principals.list(filter=f'displayName eq "{name}"') if sp.display_name == name]
    app_id = str(found[0].application_id if found else w.service_principals.create(display_name=name).application_id)
    for kind, full, privileges in (
        ("catalog", cat, ["USE_CATALOG"]),
        ("schema", f"{cat}.gold", ["USE_SCHEMA", "SELECT"]),
    ):
        change = uc.PermissionsChange(principal=app_id, add=[uc.Privilege(p) for p in privileges])
        w.grants.update(kind, full, changes=[change])


TARGETS: dict[str, Callable[[], Target]] = {"monitor": Monitor, "jobs": Jobs, "writeback": Writeback}
MORE_TARGETS: dict[str, Callable[[], Target]] = {"ingest": Ingest, "serving": Serving}
"""Not in `TARGETS` (which the kill, replica and storm scenarios iterate): each needs its own budget."""


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


class JobRuns(Jobs):
    """`job.requested` with a spec and `run` -> one job and one run of it in the workspace (run-now carries an
    idempotency token: a retried or redelivered request must find its run, not start a second one)."""

    def event(self, stand: Stand, i: int) -> tuple[str, CloudEvent[Any]]:
        name, event = super().event(stand, i)
        payload = event.data.model_copy(update={"action": {"type": "run"}})
        payload = JobRequested.model_validate(payload.model_dump())
        return name, new_event(payload, tenant_id=self.tenant, source="tests/faults")

    async def effects(self, stand: Stand) -> Counter[str]:
        """Per job name: 1 if there is one job with one run; more for a second job or a second run."""
        w = stand.workspace.client()

        def read() -> Counter[str]:
            jobs = [(j.job_id, j.settings.name) for j in w.jobs.list() if j.settings and j.settings.name]
            mine = {job_id: name for job_id, name in jobs if name.startswith(f"ap:{TENANT}:adhoc:")}
            out: Counter[str] = Counter()
            for job_id, name in mine.items():
                out[name] += 1  # the job
                out[name] += len(list(w.jobs.list_runs(job_id=job_id))) - 1  # its runs, one expected
            return out

        return await asyncio.to_thread(read)


def metric(text_: str, name: str, *labels: str) -> float:
    """The sum of a Prometheus metric's samples carrying every label given."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text_.splitlines()
        if line.startswith(name) and all(label in line for label in labels)
    )
