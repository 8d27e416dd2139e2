"""Back up, destroy a service's database, restore, continue the event stream: the effects counted afterwards are
exactly the expected set (issue 28). The service is the real monitor (its lineage store: one row per event) on the
session's PostgreSQL and Kafka; the backup and restore are `apev backup create|restore`'s functions (pg_dump and
pg_restore of its schema, the consumer group's offsets)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text

from apev_contracts import LineageEmitted, topics
from apev_contracts.envelope import encode, new_event
from apev_contracts.topics import all_topics
from apev_monitor import lineage_tables
from apev_monitor.app import create_app
from apev_monitor.settings import Settings
from apev_runtime.db.engine import create_database
from apev_runtime.db.tables import inbox
from apev_runtime.testing import create_topics, wait_for
from apev_stack.backup import BackupError, Target, backup, committed_offsets, read_manifest, restore
from apev_stack.kafka import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from freshness import _serve

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
TENANT = "backup-co"


def lineage_event(i: int) -> Any:
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"backup-test/{i}"))
    ns, name = "databricks://ws.example", f"ap:{TENANT}:adhoc:job{i}"
    payload = LineageEmitted(
        tenant_id=TENANT, event_type="COMPLETE", run_id=run_id, job_namespace=ns, job_name=name,
        openlineage={"eventType": "COMPLETE", "eventTime": "2026-12-01T10:00:00+00:00", "run": {"runId": run_id},
                     "job": {"namespace": ns, "name": name},
                     "outputs": [{"namespace": ns, "name": f"cat.gold.t{i}"}]},
    )  # fmt: skip
    return new_event(payload, tenant_id=TENANT, source="tests/backup", id=str(uuid.uuid5(uuid.NAMESPACE_URL, run_id)))


async def test_restore_older_than_the_offsets_loses_nothing_and_repeats_nothing(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path
) -> None:
    prefix = f"b{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    schema = prefix.rstrip(".") + "_monitor"
    port = free_port()
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic_prefix=prefix, database_url=pg_url,
                        database_schema=schema, http_port=port, APEV_JWT_SECRET="x" * 40, log_level="WARNING",
                        tenants_file=tmp_path / "none.yaml")  # fmt: skip
    group = f"apev-monitor-{prefix.rstrip('.')}"
    settings = settings.model_copy(update={"consumer_group": group})
    target = Target("monitor", pg_url, schema, group, prefix)
    db = create_database(pg_url, schema)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()

    async def send(numbers: range) -> None:
        for i in numbers:
            r = encode(lineage_event(i))
            await producer.send_and_wait(prefix + topics.LINEAGE_EMITTED, r.value, key=r.key, headers=r.headers)

    async def stored() -> list[str]:
        async with db.engine.connect() as conn:
            return sorted(str(r) for r in (await conn.execute(select(lineage_tables.events.c.job_name))).scalars())

    async def inbox_rows() -> int:
        async with db.engine.connect() as conn:
            q = select(func.count()).select_from(inbox).where(inbox.c.consumer == group)
            return int((await conn.execute(q)).scalar_one())

    async def duplicates() -> float:
        async with httpx.AsyncClient(timeout=5) as http:  # the service runs on this loop
            body = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        found = re.findall(r'apev_delivery_messages_total\{[^}]*outcome="duplicate"[^}]*\} ([0-9.]+)', body)
        return sum(float(x) for x in found)

    def names(numbers: range) -> list[str]:
        return sorted(f"ap:{TENANT}:adhoc:job{i}" for i in numbers)

    try:
        async with _serve(create_app(settings), port):
            await send(range(0, 20))
            await wait_for(lambda: _equal(stored, names(range(20))), what="20 events stored", timeout=60)
            await wait_for(lambda: _offsets_at(kafka_bootstrap, group, 20), what="offsets committed", timeout=30)
            t0 = time.monotonic()
            manifest = await asyncio.to_thread(backup, tmp_path / "b1", [target], workspace_data=None,
                                               bootstrap=kafka_bootstrap)  # fmt: skip
            timings = {"backup_seconds": round(time.monotonic() - t0, 2)}
            assert sum(manifest["services"]["monitor"]["offsets"].values()) == 20
            await send(range(20, 35))  # handled after the backup: committed offsets move past it
            await wait_for(lambda: _equal(stored, names(range(35))), what="35 events stored", timeout=60)
            await wait_for(lambda: _offsets_at(kafka_bootstrap, group, 35), what="offsets committed", timeout=30)
        async with db.engine.begin() as conn:  # the database is lost
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await db.dispose()
        # a tampered backup is refused before anything is touched
        (tmp_path / "b2").mkdir()
        for f in (tmp_path / "b1").iterdir():
            (tmp_path / "b2" / f.name).write_bytes(f.read_bytes())
        (tmp_path / "b2" / "monitor.pgdump").write_bytes(b"garbage")
        with pytest.raises(BackupError, match="checksum"):
            read_manifest(tmp_path / "b2")
        t0 = time.monotonic()
        done = await asyncio.to_thread(restore, tmp_path / "b1", [target], workspace_data=None,
                                       bootstrap=kafka_bootstrap)  # fmt: skip
        timings["restore_seconds"] = round(time.monotonic() - t0, 2)
        assert sum(done["monitor"]["offsets"].values()) == 20
        assert await stored() == names(range(20)) and await inbox_rows() == 20  # the backup's state
        async with _serve(create_app(settings), port):
            await send(range(35, 45))  # the stream continues
            await wait_for(lambda: _equal(stored, names(range(45))), what="45 events stored", timeout=60)
            timings["restart_to_caught_up_seconds"] = round(time.monotonic() - t0, 2)
            print(json.dumps({"backup_restore": timings}))
            assert await inbox_rows() == 45
            assert await duplicates() == 0  # 20..34 replayed from the backup's offsets: new to the restored inbox
        # replay everything from the start of the topic: every event is in the inbox, none is handled again
        await asyncio.to_thread(_reset_to_zero, kafka_bootstrap, group, prefix)
        async with _serve(create_app(settings), port):
            await wait_for(lambda: _duplicates_at(duplicates, 45), what="45 duplicates skipped", timeout=60)
            assert await stored() == names(range(45)) and await inbox_rows() == 45
    finally:
        await producer.stop()
        await db.dispose()


async def _equal(fn: Any, want: list[str]) -> bool:
    return bool(await fn() == want)


async def _duplicates_at(fn: Any, n: int) -> bool:
    return bool(await fn() >= n)


async def _offsets_at(bootstrap: str, group: str, n: int) -> bool:
    found = await committed_offsets(bootstrap, group)
    return sum(v for k, v in found.items() if topics.LINEAGE_EMITTED in k) == n


def _reset_to_zero(bootstrap: str, group: str, prefix: str) -> None:
    from apev_stack.backup import reset_offsets

    asyncio.run(reset_offsets(bootstrap, group, {f"{prefix}{topics.LINEAGE_EMITTED}:{p}": 0 for p in (0, 1)}))
