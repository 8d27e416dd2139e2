"""End to end: datasource.created -> ingest -> job.requested -> jobs service -> the run fills gold -> run.finished
-> ingest; then MCP data.changed webhooks -> gold, timed (bench/freshness.py runs this with 20 changes)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apev_mcpsim.testing import RunningMcp, running_mcp
from apev_workspace.testing import RunningWorkspace, running_workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from freshness import run_e2e

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningWorkspace, RunningMcp]]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    try:
        with (
            running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws,
            running_mcp(locations=3, days=62, webhook_backoff=0.05) as mcp,
        ):
            ws.workspace.webhooks.retry_base = 0.2
            yield ws, mcp
    finally:
        os.environ.pop("DATABRICKS_CONFIG_FILE", None)
        os.environ.update(saved)


async def test_first_sync_through_the_jobs_service_and_fresh_data_after_webhooks(
    stack: tuple[RunningWorkspace, RunningMcp], kafka_bootstrap: str, pg_url: str
) -> None:
    ws, mcp = stack
    changes = int(os.environ.get("FRESHNESS_CHANGES", "2"))
    result = await run_e2e(ws, mcp, kafka_bootstrap, pg_url, changes)
    assert len(result["latencies_seconds"]) == changes  # each change reached gold (run_e2e waits for MCP's totals)
    out = os.environ.get("FRESHNESS_OUT")
    if out:
        result["machine"] = {"cpus": os.cpu_count()}
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
