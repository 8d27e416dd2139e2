"""Poison on every topic a service consumes, through that service's own registered subscribers on the real
broker and PostgreSQL: each bad message reaches `<topic>.dlq` with its reason, and the partition keeps flowing.

The services' handlers are registered with a recording stand-in for their service object: poison is refused
by the delivery kit before a handler runs, and the valid events that follow it only need to arrive once.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faults_report import Report

from apev_contracts import topics
from apev_contracts.envelope import CloudEvent, encode, new_event
from apev_contracts.examples import TENANT, example_payloads
from apev_contracts.registry import event_type, spec_for_topic
from apev_contracts.topics import dlq_topic
from apev_ingest import handlers as ingest_handlers
from apev_jobs import handlers as jobs_handlers
from apev_monitor import handlers as monitor_handlers
from apev_runtime.broker import make_broker
from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.delivery.dlq import Reason
from apev_runtime.delivery.tools import DlqMessage, read_dlq
from apev_runtime.settings import DeliverySettings, ServiceSettings
from apev_runtime.testing import create_topics, wait_for
from apev_serving import handlers as serving_handlers
from apev_writeback import handlers as writeback_handlers

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

MAX_EVENT_BYTES = 64 * 1024
KEY = TENANT.encode()


# service -> (register, the topics its subscribers read). writeback.outcome has no consumer in the system.
class _NoCache:
    """Serving's SQL cache, which its second `run.finished` subscriber (a group per replica) invalidates."""

    def on_run_finished(self, event: CloudEvent[Any]) -> None:
        pass


class _Offboarding:
    """Serving's offboarding: the service group's handler is the recorder's; the replica's memory (its own group
    per replica, like the SQL cache's) forgets nothing here."""

    def __init__(self, service: Any) -> None:
        self.on_tenant_offboarded = service.on_tenant_offboarded

    def forget(self, tenant_id: str) -> dict[str, int]:
        return {}


def _register_monitor(broker: Any, service: Any, group: str) -> None:
    monitor_handlers.register(broker, service, group)
    monitor_handlers.register_lineage(broker, service, group)  # the lineage store (its own object in the app)


class _NoIndex:
    """Serving's document-index refresh, its third `run.finished` subscriber (group `<group>.retrieval`)."""

    async def on_run_finished(self, event: CloudEvent[Any], tx: Any) -> None:
        pass


def _register_serving(broker: Any, service: Any, group: str) -> None:
    serving_handlers.register(broker, service, group, _NoCache(), "faults", _NoIndex())  # type: ignore[arg-type]
    serving_handlers.register_offboarding(broker, _Offboarding(service), group, "faults")  # type: ignore[arg-type]


SERVICES: dict[str, tuple[Callable[..., None], list[str]]] = {
    "ingest": (
        ingest_handlers.register,
        [
            topics.DATASOURCE_CREATED,
            topics.RUN_FINISHED,
            topics.DATASOURCE_UPDATED,
            topics.DATASOURCE_REMOVED,
            topics.TENANT_OFFBOARDED,
            topics.ERASURE_REQUESTED,
        ],
    ),
    "jobs": (jobs_handlers.register, [topics.JOB_REQUESTED, topics.TENANT_OFFBOARDED]),
    "monitor": (
        _register_monitor,
        [
            topics.RUN_FINISHED,
            topics.COST_SAMPLED,
            topics.SERVING_LATENCY_SAMPLED,
            topics.TENANT_OFFBOARDED,
            topics.LINEAGE_EMITTED,
        ],
    ),
    "serving": (_register_serving, [topics.RUN_FINISHED, topics.ENDPOINT_SCALE_REQUESTED, topics.TENANT_OFFBOARDED]),
    "writeback": (
        writeback_handlers.register,
        [topics.INSIGHT_CREATED, topics.DATASOURCE_CREATED, topics.ERASURE_REQUESTED],
    ),
}


class Recorder:
    """Stands in for a service object: every `on_...(event, tx)` call is counted by event id."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        if name in ("lifecycle", "erasure"):  # ingest hands these events to its parts
            return self
        if not name.startswith("on_"):
            raise AttributeError(name)

        async def handle(event: CloudEvent[Any], tx: Any) -> None:
            self.seen[event.id] += 1

        return handle


def good_event(topic: str) -> CloudEvent[Any]:
    payload = example_payloads()[spec_for_topic(topic).model]
    return new_event(payload, tenant_id=TENANT, source="tests/faults")


def poison(topic: str) -> list[tuple[str, bytes, list[tuple[str, bytes]], Reason]]:
    """(name, value, headers, expected reason) for every kind of bad message on `topic`."""
    doc = json.loads(encode(good_event(topic)).value)

    def variant(**changes: Any) -> bytes:
        out = {**doc, "id": str(uuid.uuid4())}
        for k, v in changes.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
        return json.dumps(out).encode()

    return [
        ("not json", b"{this is not json", [], Reason.PERMANENT),
        ("wrong shape", json.dumps(["an", "array"]).encode(), [], Reason.PERMANENT),
        ("unknown type", variant(type="com.agentprovision.pizza.ordered.v1"), [], Reason.PERMANENT),
        ("future major", variant(type=event_type(topic, 2)), [], Reason.PERMANENT),
        ("missing tenant", variant(tenantid=None), [], Reason.PERMANENT),
        ("tenant carrying SQL", variant(tenantid="acme'; DROP TABLE apev_inbox;--"), [], Reason.PERMANENT),
        ("oversize", variant(subject="x" * (MAX_EVENT_BYTES + 10)), [], Reason.OVERSIZE),
        ("non-UTF-8 ce_type header", variant(), [("ce_type", b"\xff\xfe\x00bad")], Reason.PERMANENT),
    ]


@dataclass
class Consumer:
    """One service's subscribers on their own topic prefix, schema and group."""

    name: str
    bootstrap: str
    pg_url: str
    prefix: str = field(default_factory=lambda: f"p{uuid.uuid4().hex[:8]}.")
    recorder: Recorder = field(default_factory=Recorder)

    @property
    def group(self) -> str:
        return f"faults-{self.name}-{self.prefix.rstrip('.')}"

    async def start(self) -> None:
        register, self.topics = SERVICES[self.name]
        settings = ServiceSettings(
            service_name=f"faults-{self.name}",
            kafka_bootstrap_servers=self.bootstrap,
            kafka_topic_prefix=self.prefix,
            database_url=self.pg_url,
            database_schema=self.prefix.rstrip("."),
            delivery=DeliverySettings(
                retry_attempts=2,
                retry_timeout_seconds=5,
                retry_initial_wait_seconds=0.05,
                retry_max_wait_seconds=0.2,
                max_event_bytes=MAX_EVENT_BYTES,
            ),
        )
        await create_topics(
            self.bootstrap,
            [self.prefix + t for t in self.topics] + [dlq_topic(self.prefix + t) for t in self.topics],
            partitions=2,
        )
        self.db: Database = create_database(settings.resolved_database_url(), settings.database_schema)
        await migrate.upgrade(self.db)
        self.broker = make_broker(settings, db=self.db)
        register(self.broker, self.recorder, self.group)

    async def stop(self) -> None:
        await self.broker.stop()
        await self.db.dispose()

    async def letters(self, topic: str) -> list[DlqMessage]:
        return await read_dlq(self.bootstrap, dlq_topic(self.prefix + topic))


async def _run(kafka_bootstrap: str, pg_url: str, report: Report, rounds: int, name: str) -> None:
    started = time.monotonic()
    consumers = [Consumer(n, kafka_bootstrap, pg_url) for n in SERVICES]
    for c in consumers:  # Alembic's environment is process-global: migrate one at a time
        await c.start()
    await asyncio.gather(*(c.broker.start() for c in consumers))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, max_request_size=4 << 20)
    await producer.start()
    try:
        expected: dict[tuple[str, str, int, int], tuple[str, Reason]] = {}  # (svc, topic, p, offset) -> case
        valid: dict[tuple[str, str], list[str]] = {}
        for c in consumers:
            for topic in c.topics:
                target = c.prefix + topic
                valid[(c.name, topic)] = []
                for _ in range(rounds):
                    for case, value, headers, reason in poison(topic):
                        meta = await producer.send_and_wait(target, value=value, key=KEY, headers=headers)
                        expected[(c.name, topic, meta.partition, meta.offset)] = (case, reason)
                        ok = good_event(topic)  # flows between the poison, with a junk non-UTF-8 header
                        record = encode(ok)
                        await producer.send_and_wait(
                            target, value=record.value, key=KEY, headers=[*record.headers, ("x-junk", b"\xff\x80")]
                        )
                        valid[(c.name, topic)].append(ok.id)
                    # Same id, different content, after the first was processed: a conflict.
                    first = good_event(topic)
                    await producer.send_and_wait(target, value=encode(first).value, key=KEY)
                    valid[(c.name, topic)].append(first.id)
                    clash = json.loads(encode(first).value)
                    clash["subject"] = "different content"
                    meta = await producer.send_and_wait(target, value=json.dumps(clash).encode(), key=KEY)
                    expected[(c.name, topic, meta.partition, meta.offset)] = (
                        "same id different content",
                        Reason.CONFLICT,
                    )
                    last = good_event(topic)
                    await producer.send_and_wait(target, value=encode(last).value, key=KEY)
                    valid[(c.name, topic)].append(last.id)

        by_name = {c.name: c for c in consumers}

        async def all_valid_seen() -> bool:
            return all(by_name[s].recorder.seen[i] >= 1 for (s, _), ids in valid.items() for i in ids)

        await wait_for(all_valid_seen, timeout=120, what="every valid event after the poison")
        found: Counter[tuple[tuple[str, str, int, int], str]] = Counter()
        wrong: list[str] = []
        for c in consumers:
            for topic in c.topics:
                for m in await c.letters(topic):
                    pos = (c.name, topic, m.letter.partition, m.letter.offset)
                    found[(pos, m.letter.consumer)] += 1  # serving reads run.finished in three groups
                    case = expected.get(pos)
                    if case is None:
                        wrong.append(f"{c.name}/{topic}: unexpected letter {m.summary()}")
                        continue
                    if m.letter.reason is not case[1] or not m.letter.error_message:
                        wrong.append(f"{c.name}/{topic} {case[0]}: {m.letter.reason} {m.letter.error_message!r}")
                    if m.letter.topic != c.prefix + topic or not m.letter.consumer.startswith(c.group):
                        wrong.append(f"{c.name}/{topic} {case[0]}: letter names {m.letter.topic} {m.letter.consumer}")
                    if case[0] == "tenant carrying SQL" and "tenantid" not in m.letter.error_message:
                        wrong.append(f"{c.name}/{topic}: the SQL tenant's error names no field")
        lettered = {pos for pos, _ in found}
        lost_poison = [expected[p] for p in expected if p not in lettered]
        dup_poison = sum(n - 1 for n in found.values() if n > 1)
        lost_valid = sum(1 for (s, _), ids in valid.items() for i in ids if by_name[s].recorder.seen[i] == 0)
        dup_valid = sum(
            by_name[s].recorder.seen[i] - 1
            for (s, _), ids in valid.items()
            for i in ids
            if by_name[s].recorder.seen[i] > 1
        )
        report.record(
            name,
            tried=len(expected) + sum(len(ids) for ids in valid.values()),
            lost=len(lost_poison) + lost_valid,
            duplicated=dup_poison + dup_valid,
            seconds=time.monotonic() - started,
            poison=len(expected),
            valid=sum(len(ids) for ids in valid.values()),
            subscriptions=[f"{c.name}:{t}" for c in consumers for t in c.topics],
            cases=sorted({case for case, _ in expected.values()}),
        )
        assert not wrong, wrong
        assert not lost_poison, lost_poison
        assert (dup_poison, lost_valid, dup_valid) == (0, 0, 0)
    finally:
        await producer.stop()
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)


@pytest.mark.faults
async def test_poison_on_every_topic_reaches_the_dlq_and_the_partition_flows(
    kafka_bootstrap: str, pg_url: str, report: Report
) -> None:
    await _run(kafka_bootstrap, pg_url, report, rounds=1, name="poison_every_topic")


@pytest.mark.faults_long
async def test_poison_storm_on_every_topic(kafka_bootstrap: str, pg_url: str, report: Report) -> None:
    await _run(kafka_bootstrap, pg_url, report, rounds=25, name="poison_storm_every_topic")
