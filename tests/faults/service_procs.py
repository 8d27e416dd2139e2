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
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apev_contracts import InsightCreated, JobRequested, ServingLatencySampled
from apev_contracts.envelope import CloudEvent, encode, new_event
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


TARGETS: dict[str, Callable[[], Target]] = {"monitor": Monitor, "jobs": Jobs, "writeback": Writeback}


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
