"""6. Write-back: insights/s written to the MCP simulator at the service's rate limit toward MCP, with
duplicates counted (must be 0).

One writeback service in this process (its MCP limiter at `target_rate_per_second`, default 50/s, and
`target_concurrency` 4), the MCP simulator and the Slack stand-in. N `insight.created` events over T tenants
(fields that need no approval), a tenth of them published twice (a redelivery); from the first send until the
simulator holds N applied changes. Duplicates: changes the simulator applied for the same insight more than once
(each insight's reason names it, so a second change under another idempotency key would show).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from typing import Any

import yaml
from _common import Env, Progress, row
from _jobs_stack import JWT_SECRET, wait_until
from aiokafka import AIOKafkaProducer

from apev_contracts import InsightCreated
from apev_contracts.envelope import encode, new_event
from apev_contracts.topics import all_topics
from apev_mcpsim.testing import running_mcp
from apev_runtime.settings import DeliverySettings
from apev_runtime.testing import create_topics, serve_app
from apev_sinks.testing import running_sinks
from apev_stack.kafka import free_port
from apev_writeback.app import create_app
from apev_writeback.settings import Settings

NAME = "writeback"
TITLE = "write-back insights/s to MCP at the rate limit; duplicates"


async def run(env: Env, quick: bool, progress: Progress) -> dict[str, Any]:
    n, tenants = (40, 2) if quick else (600, 10)
    pg = await env.ensure_database()
    prefix = env.prefix("bw")
    await create_topics(env.bootstrap, [prefix + t for t in all_topics()], partitions=3)
    folder = env.tmp / f"wb-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    with running_mcp(webhook_backoff=0.05) as mcp, running_sinks(slack_min_interval=0.0) as sinks:
        entries, codes = {}, {}
        for i in range(tenants):
            tenant = f"wb-{i}-{secrets.token_hex(3)}"
            codes[tenant] = mcp.new_tenant("wb")
            path = f"T0APEV0000/B{secrets.token_hex(4).upper()}/approvals-{tenant}"
            sinks.backend.slack.register(path, f"#approvals-{tenant}")
            entries[tenant] = {
                "approvers": ["U0APPROVER"],
                "approvals_webhook": sinks.urls.slack_webhook(path),
                "mcp_tenant_code": codes[tenant],
            }
        tenants_file = folder / "tenants.yaml"
        tenants_file.write_text(yaml.safe_dump({"defaults": {}, "tenants": entries}))
        settings = Settings(
            kafka_bootstrap_servers=env.bootstrap,
            kafka_topic_prefix=prefix,
            database_url=pg,
            database_schema=prefix.rstrip(".") + "_writeback",
            http_port=free_port(),
            MCP_BASE_URL=mcp.base_url,
            MCP_API_KEY=mcp.admin_key,
            APEV_JWT_SECRET=JWT_SECRET,
            slack_signing_secret="bench-signing-secret-0000",  # noqa: S106 (local stand-in)
            tenants_file=tenants_file,
            log_format="console",
            log_level="ERROR",
            delivery=DeliverySettings(retry_attempts=3, retry_timeout_seconds=10, retry_initial_wait_seconds=0.05),
        )
        limit = settings.target_rate_per_second
        names = list(entries)
        events = []
        for i in range(n):
            tenant = names[i % tenants]
            insight_id = f"ins-{uuid.uuid4().hex[:12]}"
            data = InsightCreated.model_validate(
                {
                    "tenant_id": tenant,
                    "insight_id": insight_id,
                    "agent_id": "retention-agent",
                    "target_system": "adp",
                    "entity_type": "employees",
                    "entity_id": f"E{1 + i % 20:05d}",
                    "changes": {"RISK_FLAG": "HIGH", "REVIEW_STATUS": "pending", "REVIEW_DATE": "2026-12-01"},
                    "reason": f"bench {insight_id}",
                    "confidence": 0.9,
                }
            )
            events.append(new_event(data, tenant_id=tenant, source="bench/writeback"))
        redelivered = events[::10]
        async with serve_app(create_app(settings), settings.http_port):
            producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, enable_idempotence=True, linger_ms=5)
            await producer.start()
            try:
                progress(0.05, f"{n} insights (+{len(redelivered)} redelivered) over {tenants} tenants")
                t0 = time.monotonic()
                for event in events + redelivered:
                    record = encode(event)
                    await producer.send(prefix + record.topic, record.value, key=record.key, headers=record.headers)
                await producer.flush()

                def applied() -> int:
                    got = sum(1 for c in list(mcp.backend.changes) if str(c.get("reason", "")).startswith("bench "))
                    progress(0.05 + 0.9 * got / n, f"{got}/{n} insights written")
                    return got

                await wait_until(f"{n} write-backs at MCP", lambda: applied() >= n, 600, every=0.1)
                seconds = time.monotonic() - t0
                await asyncio.sleep(2.0)  # a late duplicate would land now
            finally:
                await producer.stop()
        per_insight: dict[str, int] = {}
        for c in list(mcp.backend.changes):
            reason = str(c.get("reason", ""))
            if reason.startswith("bench "):
                per_insight[reason] = per_insight.get(reason, 0) + 1
    duplicates = sum(v - 1 for v in per_insight.values())
    rate = n / seconds
    progress(1.0, None)
    return {
        "figures": {
            "insights_per_second": round(rate, 2),
            "limit_per_second": limit,
            "duplicates": duplicates,
            "insights": n,
            "redelivered": len(redelivered),
        },
        "summary": [
            row(
                f"write-back insights/s to MCP ({n} insights, {tenants} tenants)",
                round(rate, 1),
                baseline=limit,
                ratio=rate / limit,
                unit="/s",
                note=f"baseline: the service's own limit toward MCP (WRITEBACK_TARGET_RATE_PER_SECOND {limit:g}, "
                f"concurrency {settings.target_concurrency})",
            ),
            row(
                f"duplicates at MCP ({len(redelivered)} insights delivered twice)",
                duplicates,
                target="0",
                met=duplicates == 0,
            ),
        ],
    }
