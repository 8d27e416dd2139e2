"""Pytest fixtures giving any test the real broker and a throwaway PostgreSQL database.

Loaded by the root `conftest.py`. Both are session-scoped and lazy: a test session that asks for neither
starts neither.

- `kafka_bootstrap`: `KAFKA_BOOTSTRAP_SERVERS` when set, else a private broker for this test session
  (free ports, temporary folder), with every registered topic and its `.dlq` twin created.
- `new_topic`: makes fresh topics (and their `.dlq` twins) so delivery tests never share offsets.
- `pg_url`: an asyncpg SQLAlchemy URL to a database created for this test session and dropped after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from apev_contracts.topics import dlq_topic
from apev_stack.kafka import KafkaBroker, create_topics, free_port
from apev_stack.paths import repo_root


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        asyncio.run(create_topics(external))
        yield external
        return
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    broker = KafkaBroker(home=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port())
    broker.start()
    try:
        asyncio.run(create_topics(broker.bootstrap))
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    """`await new_topic("job.requested", partitions=3)` -> a fresh unique topic name (its `.dlq` too)."""

    async def make(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        await create_topics(kafka_bootstrap, [name, dlq_topic(name)], partitions=partitions)
        return name

    return make


def _admin_pg_url() -> str:
    url = os.environ.get("APEV_TEST_PG_URL")
    if url:
        return url
    script = repo_root() / "deploy" / "postgres.sh"
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"could not make PostgreSQL available ({script}):\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("APEV_TEST_PG_URL="):
            return line.split("=", 1)[1]
    pytest.fail(f"{script} printed no APEV_TEST_PG_URL:\n{out.stdout}{out.stderr}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    import asyncpg  # local: only sessions that use PostgreSQL need the driver loaded

    admin = _admin_pg_url()
    name = f"apev_test_{uuid.uuid4().hex[:12]}"

    async def admin_exec(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_exec(f'CREATE DATABASE "{name}"'))
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        asyncio.run(admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def repo() -> Path:
    return repo_root()
