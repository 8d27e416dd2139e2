"""MCP faults: a 503 storm opens the breaker and pauses consumption until MCP recovers; 1,000 insights are
applied once each through a SIGKILL mid-stream and 10 % of responses lost after the change was applied."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from apev_mcpsim.testing import RunningMcp
from apev_sinks.testing import RunningSinks

from .conftest import JWT_SECRET, SIGNING_SECRET, Stack, open_stack, serve_writeback, until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

UPDATE = "/api/v1/integrations/*/update"


async def _metric(stack: Stack, name: str, *labels: str) -> float:
    async with stack.http(None) as http:
        text = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and all(label in line for label in labels)
    )


async def test_a_503_storm_opens_the_breaker_pauses_consumption_and_resumes_with_nothing_lost(stack: Stack) -> None:
    t = stack.tenant()
    events = [stack.insight(t, f"E{20 + i:05d}") for i in range(5)]
    stack.mcp.add_fault("503", UPDATE)
    try:
        await stack.send(*events)
        await until(
            lambda: _metric(stack, "apev_delivery_messages_total", 'outcome="paused"'), timeout=30, what="a pause"
        )
        assert stack.service is not None
        assert stack.service.gw.breakers.open_hosts() or await _metric(
            stack, "apev_delivery_messages_total", 'outcome="paused"'
        )
        await asyncio.sleep(2.5)  # the storm goes on: still nothing written, nothing dead-lettered
        assert stack.changes(t) == []
        assert not [r for r in stack.dead if r.key.decode() == t.tenant_id]
    finally:
        stack.mcp.clear_faults()
    await until(lambda: len(stack.changes(t)) == 5, timeout=60, what="all five after recovery")
    await until(lambda: all(stack.outcomes_of(e.data.insight_id) == ["applied"] for e in events), what="outcomes")
    assert sorted(c["idempotency_key"] for c in stack.changes(t)) == sorted(e.data.insight_id for e in events)
    assert not [r for r in stack.dead if r.key.decode() == t.tenant_id]
    trail = await stack.audit(t, events[0].data.insight_id)
    assert trail["attempts"][0]["status"] == 503 and trail["attempts"][-1]["status"] == 200


async def test_1000_insights_1000_changes_through_sigkill_and_lost_responses(
    mcp_sim: RunningMcp, alert_sinks_server: RunningSinks, kafka_bootstrap: str, pg_url: str, tmp_path: Path
) -> None:
    n = 1000
    async with open_stack(mcp_sim, alert_sinks_server, kafka_bootstrap, pg_url, tmp_path, serve=False) as stack:
        t = stack.tenant()
        s = stack.settings
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_TOPIC_PREFIX": stack.prefix,
            "WRITEBACK_DATABASE_URL": pg_url,
            "WRITEBACK_DATABASE_SCHEMA": str(s.database_schema),
            "WRITEBACK_HTTP_PORT": str(s.http_port),
            "WRITEBACK_TENANTS_FILE": str(stack.tenants_file),
            "WRITEBACK_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "WRITEBACK_MCP_WAIT_INITIAL_SECONDS": "0.02",
            "WRITEBACK_LOG_LEVEL": "WARNING",
            "WRITEBACK_LOG_FORMAT": "json",
            "MCP_BASE_URL": mcp_sim.base_url,
            "MCP_API_KEY": mcp_sim.admin_key,
            "APEV_JWT_SECRET": JWT_SECRET,
        }
        rule = mcp_sim.add_fault("lost_response", UPDATE, method="POST", ratio=0.1)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "apev_writeback", env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            events = [stack.insight(t, f"E{1 + i % 150:05d}", changes={"REVIEW_NOTE": f"note {i}"}) for i in range(n)]
            await stack.send(*events)
            await until(lambda: len(stack.changes(t)) >= 250, timeout=120, what="250 changes before the kill")
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            killed_at = len(stack.changes(t))
            assert killed_at < n, "the kill came too late to prove anything"
            async with serve_writeback(stack.settings) as service:  # a fresh replica takes over
                stack.service = service
                await until(lambda: len(stack.changes(t)) >= n, timeout=180, what=f"{n} changes")
                await until(lambda: _applied(stack, n), timeout=60, what="every outcome")
                await asyncio.sleep(1.0)  # anything that would be a duplicate has had time to arrive
                changes = stack.changes(t)
                lost = [f for f in mcp_sim.admin("GET", "/__admin/faults")["faults"] if f["id"] == rule["id"]]
        finally:
            mcp_sim.clear_faults()
        keys = Counter(c["idempotency_key"] for c in changes)
        assert len(changes) == n and set(keys) == {e.data.insight_id for e in events}
        assert max(keys.values()) == 1  # none twice
        versions = Counter(c["entity_id"] for c in changes)
        rows = mcp_sim.backend.table(t.code, "employees").rows
        assert all(int(rows[e]["VERSION"]) == 1 + count for e, count in versions.items())
        assert lost and lost[0]["fired"] >= 50, lost  # responses really were lost
        print(f"\nkilled after {killed_at} of {n} changes; {lost[0]['fired']} responses lost")


def _applied(stack: Stack, n: int) -> bool:
    applied = {e.data.insight_id for e in stack.outcomes if e.data.outcome == "applied"}
    return len(applied) == n
