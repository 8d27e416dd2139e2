"""Wiring of the monitor service: the one place that builds real adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import structlog
from starlette.applications import Starlette

from apev_monitor import api, handlers, lineage_api
from apev_monitor.billing import BillingSampler
from apev_monitor.clock import Clock, SystemClock
from apev_monitor.console.clients import ServiceClients
from apev_monitor.console.pages import Console
from apev_monitor.dlq import DlqOffsets
from apev_monitor.lineage import LineageStore
from apev_monitor.metrics import Metrics
from apev_monitor.notifiers import EmailSender, Notifier, PagerDutySender, Sender, SlackSender, http_client
from apev_monitor.rules import load_rules
from apev_monitor.service import MonitorService
from apev_monitor.settings import Settings
from apev_monitor.tenants import tenant_directory
from apev_runtime.app import build_app, build_runtime
from apev_runtime.db.leader import leadership_for
from apev_runtime.http import HostBreakers

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"

log = structlog.get_logger("apev.monitor")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Starlette:
    """`clock` is the seam for tests that step time (rules, group timing, retries, silences)."""
    settings = settings or Settings()
    rules = load_rules(settings.rules_file)  # an invalid file stops the start here, naming rule and field
    runtime = build_runtime(settings, migrations=[MIGRATIONS])
    clock = clock or SystemClock()
    metrics = Metrics(runtime.registry)
    breakers = HostBreakers(failure_threshold=settings.breaker_failures, cool_down=settings.breaker_cool_down_seconds)
    http = http_client(settings, breakers)
    senders: dict[str, Sender] = {
        "slack": SlackSender(
            http,
            {k: v.get_secret_value() for k, v in settings.slack_webhooks.items()},
            resend_unconfirmed=settings.slack_resend_unconfirmed,
        ),
        "pagerduty": PagerDutySender(
            http,
            settings.pagerduty_events_url,
            settings.pagerduty_routing_key.get_secret_value() if settings.pagerduty_routing_key else None,
        ),
        "email": EmailSender(settings),
    }
    sampler = None
    if runtime.databricks is not None:
        sampler = BillingSampler(
            runtime.db, runtime.databricks, metrics, warehouse_id=settings.warehouse_id, days=settings.sample_days
        )
    dlq = DlqOffsets(settings.kafka_bootstrap_servers, settings.kafka_topic_prefix)
    service = MonitorService(
        runtime.db,
        rules,
        tenant_directory(settings.tenants_file),
        clock,
        metrics,
        Notifier(runtime.db, senders, metrics),
        sampler=sampler,
        dlq=dlq,
        notification_ttl=settings.notification_ttl_seconds,
    )
    handlers.register(runtime.broker, service, settings.consumer_group)
    lineage = LineageStore(runtime.db)
    handlers.register_lineage(runtime.broker, lineage, settings.consumer_group)
    leader = leadership_for(runtime.db, "monitor-alerting")

    def led(step: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if await leader.acquire():  # one replica samples, evaluates and notifies at a time
                await step()

        return run

    loops = [
        (settings.evaluate_interval_seconds, lambda: _evaluate(service), "evaluate"),
        (settings.notify_interval_seconds, service.deliver, "notify"),
    ]
    if sampler is not None:
        loops.append((settings.sample_interval_seconds, service.sample_costs, "sample"))
    for interval, step, name in loops:

        async def loop(stop: asyncio.Event, interval: float = interval, step=step, name: str = name) -> None:  # type: ignore[no-untyped-def]
            await service.background(stop, interval, led(step), name)

        runtime.background.append(loop)

    async def close(stop: asyncio.Event) -> None:
        await stop.wait()
        await dlq.close()
        await http.aclose()
        await leader.release()

    runtime.publishes = handlers.PUBLISHES
    # The console reads the monitor's own data through its own API, in process (same checks as any caller).
    own = httpx.ASGITransport(app=lambda scope, receive, send: app(scope, receive, send))
    clients = ServiceClients(
        urls={
            "ingest": settings.ingest_url,
            "jobs": settings.jobs_url,
            "serving": settings.serving_url,
            "writeback": settings.writeback_url,
            "monitor": "http://monitor.internal",
        },
        secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        timeout=settings.console_timeout_seconds,
        token_ttl=settings.console_token_ttl_seconds,
        transports={"monitor": own},
    )
    console = Console(
        clients,
        runtime.jwt,
        service.tenants,
        bootstrap=settings.kafka_bootstrap_servers,
        topic_prefix=settings.kafka_topic_prefix,
        dlq=DlqOffsets(settings.kafka_bootstrap_servers, settings.kafka_topic_prefix),  # its own consumer
        poll_seconds=settings.console_poll_seconds,
        cookie_secure=settings.console_cookie_secure,
        key=settings.jwt_secret.get_secret_value().encode() if settings.jwt_secret else None,
    )

    async def close_console(stop: asyncio.Event) -> None:
        await stop.wait()
        await clients.aclose()
        await console.dlq.close()

    runtime.background += [close, close_console]
    app = build_app(
        runtime,
        routes=[*api.routes(service, runtime.jwt), *lineage_api.routes(lineage, runtime.jwt), *console.routes()],
    )
    app.state.service = service
    app.state.lineage = lineage
    app.state.console = console
    return app


async def _evaluate(service: MonitorService) -> None:
    await service.snapshot_dlq()
    await service.evaluate()
