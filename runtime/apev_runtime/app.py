"""One shape for every service process: broker + database + outbox relay + an HTTP side.

    runtime = build_runtime(settings, migrations=[Path(__file__).parent / "migrations"])
    register_handlers(runtime)                 # the service's subscribers, on runtime.broker
    app = build_app(runtime, routes=api_routes(runtime))
    serve(app, settings)                       # uvicorn; SIGTERM finishes in-flight work, commits, closes

HTTP: `/healthz` (the process lives), `/readyz` (broker, database and each configured dependency answer;
503 with the failing check named otherwise), `/metrics` (Prometheus: delivery counters, FastStream's
consumer metrics, process metrics), `/asyncapi.json` (the AsyncAPI 3.0 document of the subscribers on the broker
and the events in `Runtime.publishes`; see `apev_runtime.asyncapi`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import structlog
import uvicorn
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry import context as otel_context
from opentelemetry import propagate
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apev_runtime import asyncapi, outbox
from apev_runtime.auth import JwtVerifier
from apev_runtime.broker import make_broker
from apev_runtime.databricks import DatabricksClients
from apev_runtime.db import migrate
from apev_runtime.db.engine import Database, create_database
from apev_runtime.delivery import inbox
from apev_runtime.logging import configure_logging
from apev_runtime.outbox import KafkaInDoubtCheck, OutboxRelay
from apev_runtime.settings import ServiceSettings
from apev_runtime.tracing import setup_tracing

log = structlog.get_logger("apev.app")

MAX_BODY_BYTES = 1 << 20
"""Largest request body a service's HTTP side reads (1 MiB, what a consumed event may weigh); 413 above it."""

Check = Callable[[], Awaitable[Any]]


class BrokerProducer:
    """The outbox relay's producer: the broker's own idempotent producer (acks=all)."""

    def __init__(self, broker: KafkaBroker, topic_prefix: str = "") -> None:
        self.broker = broker
        self.topic_prefix = topic_prefix

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Any:
        hdrs = {k: v.decode("utf-8", "replace") for k, v in headers or []}
        # Publish inside the trace the row was written in: the telemetry middleware then injects a child
        # span of that trace, instead of starting a new trace for the relay.
        token = otel_context.attach(propagate.extract(hdrs))
        try:
            return await self.broker.publish(value, topic=self.topic_prefix + topic, key=key, headers=hdrs)
        finally:
            otel_context.detach(token)


@dataclass
class Runtime:
    settings: ServiceSettings
    db: Database
    broker: KafkaBroker
    relay: OutboxRelay
    registry: CollectorRegistry
    migrations: Sequence[Path] = ()
    checks: dict[str, Check] = field(default_factory=dict)
    databricks: DatabricksClients | None = None
    jwt: JwtVerifier | None = None
    """Verifier for the service's API endpoints (`auth.requires(runtime.jwt, roles=...)`), from settings."""
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)
    publishes: Sequence[type[BaseModel]] = ()
    """The event models the service publishes (through the outbox): the send side of its AsyncAPI document."""


def build_runtime(
    settings: ServiceSettings,
    *,
    migrations: Sequence[Path] = (),
    extra_middlewares: Sequence[Callable[..., Any]] = (),
) -> Runtime:
    """Wire the shared parts; nothing connects until the app starts."""
    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=[
            settings.databricks_token.get_secret_value() if settings.databricks_token else None,
            settings.databricks_client_secret.get_secret_value() if settings.databricks_client_secret else None,
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        ],
    )
    setup_tracing(settings.service_name)
    registry = CollectorRegistry()
    for collector in (process_collector.ProcessCollector, platform_collector.PlatformCollector):
        collector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    db = create_database(settings.resolved_database_url(), settings.database_schema)
    broker = make_broker(
        settings,
        db=db,
        registry=registry,
        extra_middlewares=[
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.service_name),
            *extra_middlewares,
        ],
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        broker=broker,
        relay=OutboxRelay(
            db,
            BrokerProducer(broker, settings.kafka_topic_prefix),
            in_doubt_check=KafkaInDoubtCheck(settings.kafka_bootstrap_servers, settings.kafka_topic_prefix),
            registry=registry,
        ),
        registry=registry,
        migrations=migrations,
    )
    runtime.jwt = settings.jwt_verifier()
    runtime.checks["database"] = db.ping
    runtime.checks["broker"] = _broker_check(broker)
    runtime.background.append(_pruner(runtime))
    if settings.mcp_base_url:
        runtime.checks["mcp"] = _http_check(settings.mcp_base_url.rstrip("/") + "/health")
    if settings.databricks_host and settings.databricks_configured:
        clients = DatabricksClients(
            settings.databricks_host,
            settings.databricks_token.get_secret_value() if settings.databricks_token else None,
            client_id=settings.databricks_client_id,
            client_secret=(
                settings.databricks_client_secret.get_secret_value() if settings.databricks_client_secret else None
            ),
            threads=settings.databricks_threads,
        )
        runtime.databricks = clients
        runtime.checks["databricks"] = clients.ping
    return runtime


def _http_check(url: str) -> Check:
    async def check() -> None:
        async with httpx.AsyncClient(timeout=3.0) as client:
            (await client.get(url)).raise_for_status()

    return check


def _pruner(runtime: Runtime) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """Background job: prune old inbox rows and published outbox rows, once per interval."""
    d = runtime.settings.delivery

    async def prune(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with runtime.db.transaction() as tx:
                    dropped = await inbox.prune(tx, timedelta(days=d.inbox_retention_days))
                published = await outbox.prune(runtime.db, timedelta(days=d.outbox_retention_days))
                if dropped or published:
                    log.info("pruned", inbox_rows=dropped, outbox_rows=published)
            except Exception:
                log.warning("prune_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=d.prune_interval_seconds)

    return prune


def _broker_check(broker: KafkaBroker) -> Check:
    async def check() -> None:
        if not await broker.ping(timeout=3.0):
            raise ConnectionError("Kafka metadata request failed")

    return check


def health_routes(runtime: Runtime) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": runtime.settings.service_name})

    async def readyz(_: Request) -> Response:
        results: dict[str, str] = {}
        ok = True
        for name, check in runtime.checks.items():
            started = time.monotonic()
            try:
                await asyncio.wait_for(check(), timeout=5.0)
                results[name] = f"ok ({(time.monotonic() - started) * 1000:.0f} ms)"
            except Exception as exc:
                ok = False
                results[name] = f"failing: {type(exc).__name__}: {exc}"[:300]
        body = {"status": "ready" if ok else "not ready", "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    document: list[bytes] = []

    async def asyncapi_json(_: Request) -> Response:
        if not document:  # built once, on first request: the subscribers are all registered by then
            document.append(asyncapi.render(asyncapi.document(runtime)).encode())
        return Response(document[0], media_type="application/json")

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/asyncapi.json", asyncapi_json),
    ]


class BodyLimit:
    """413 for a request body over `max_bytes`: from `Content-Length` before anything is read, or while a
    body without one streams in (the endpoint's read is stopped there)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer now; the endpoint sees the client gone, and whatever it sends is dropped.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send: Send) -> None:
        response = JSONResponse(
            {"error": "payload_too_large", "detail": f"request body exceeds {self.max_bytes} bytes"}, status_code=413
        )
        await response({"type": "http"}, _no_body, send)


class NulGuard:
    """400 for a NUL character (`%00`) in the path or query string: no text column or header can hold U+0000
    (PostgreSQL refuses it), so such a value is the caller's mistake, never a server error (schemathesis found one)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            response = JSONResponse(
                {"error": "bad_request", "detail": "a NUL character (%00) in the path or query string"}, status_code=400
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def build_app(runtime: Runtime, *, routes: Sequence[BaseRoute] = (), max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The service's ASGI app; its lifespan starts and stops everything in order. Request bodies over
    `max_body_bytes` get 413 before an endpoint reads them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.databricks is not None:
            # OAuth M2M: a refused client id/secret stops start-up here, with the client id (never the secret).
            try:
                await runtime.databricks.check_sign_in()
            except Exception:
                runtime.databricks.close()
                raise
        await migrate.upgrade(runtime.db, runtime.migrations)
        await runtime.broker.start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(runtime.relay.run(stop), name="outbox-relay")]
        tasks += [asyncio.create_task(job(stop)) for job in runtime.background]
        log.info("service_started", service=runtime.settings.service_name)
        try:
            yield
        finally:
            log.info("service_stopping", service=runtime.settings.service_name)
            # Consumers first: in-flight handlers finish (graceful timeout) and commit; then the relay
            # publishes what they wrote; then the producer and the database close.
            for sub in runtime.broker.subscribers:
                await sub.stop()
            stop.set()
            runtime.relay.wake()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await runtime.relay.publish_pending()
            await runtime.relay.close()
            await runtime.broker.stop()
            if runtime.databricks is not None:
                runtime.databricks.close()
            await runtime.db.dispose()
            log.info("service_stopped", service=runtime.settings.service_name)

    app = Starlette(
        routes=[*health_routes(runtime), *routes],
        lifespan=lifespan,
        middleware=[Middleware(NulGuard), Middleware(BodyLimit, max_bytes=max_body_bytes)],
    )
    app.state.runtime = runtime
    return app


def serve(app: Starlette, settings: ServiceSettings) -> None:
    """Run under uvicorn until SIGTERM/SIGINT (then the lifespan shuts down in order)."""
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # our structlog pipeline handles uvicorn's loggers too
        lifespan="on",
        timeout_graceful_shutdown=45,
    )
