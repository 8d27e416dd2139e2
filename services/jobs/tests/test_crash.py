"""SIGKILL between run-now and the commit: the request is redelivered, and its token returns the same run."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from apev_contracts.topics import all_topics
from apev_runtime.testing import create_topics
from apev_stack.kafka import free_port
from apev_workspace.testing import RunningWorkspace

from .conftest import HOOK_PASSWORD, JWT_SECRET, TASKS, Stack, jobs_settings, serve_jobs

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

WORKER = Path(__file__).with_name("kill_worker.py")


def _env(ws: RunningWorkspace, bootstrap: str, pg_url: str, prefix: str, schema: str, kill: bool) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "JOBS_DATABASE_URL": pg_url,
        "JOBS_DATABASE_SCHEMA": schema,
        "JOBS_HTTP_PORT": str(port),
        "JOBS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DATABRICKS_HOST": ws.host,
        "DATABRICKS_TOKEN": ws.admin_token,
        "APEV_JWT_SECRET": JWT_SECRET,
        "JOBS_WEBHOOK_PASSWORD": HOOK_PASSWORD,
        "JOBS_LOG_FORMAT": "json",
        "KILL_AFTER_RUN_NOW": "1" if kill else "0",
    }


async def test_sigkill_after_run_now_before_commit_still_one_run(
    workspace: RunningWorkspace, kafka_bootstrap: str, pg_url: str
) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}."
    schema = prefix.rstrip(".") + "_jobs"
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    env = _env(workspace, kafka_bootstrap, pg_url, prefix, schema, kill=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    settings = jobs_settings(workspace, kafka_bootstrap, pg_url, prefix, schema)
    stack = Stack(workspace, kafka_bootstrap, pg_url, prefix, schema, settings, None, "")  # type: ignore[arg-type]
    from aiokafka import AIOKafkaProducer

    stack.producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await stack.producer.start()
    try:
        event = stack.request(
            job={"tasks": [{"task_key": "t", "python_task": {"python_file": f"{TASKS}/ok.py"}}]},
            action={"type": "run"},
        )
        await stack.send(event)
        assert await asyncio.wait_for(proc.wait(), 90) == -9
        output = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
        assert "run-now answered" in output, output[-3000:]
        w = workspace.client()
        (job,) = list(w.jobs.list(name=event.data.job_name))
        assert len(list(w.jobs.list_runs(job_id=job.job_id))) == 1

        async with serve_jobs(settings) as service:  # a healthy replica takes over the redelivered request
            stack.service = service
            run_id = await stack.run_of(event.id, timeout=60)
        assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [int(run_id)]
        assert len(list(w.jobs.list(name=event.data.job_name))) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
        await stack.producer.stop()
