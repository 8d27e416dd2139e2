"""`/readyz` says 503 and names the failing dependency; `/healthz` stays 200 (the process lives)."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.testclient import TestClient

from apev_runtime.app import build_runtime, health_routes
from apev_runtime.settings import ServiceSettings
from apev_stack.kafka import free_port


async def test_readyz_names_what_is_down(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    settings = ServiceSettings(
        service_name="readiness-test",
        kafka_bootstrap_servers=f"127.0.0.1:{dead}",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        mcp_base_url=f"http://127.0.0.1:{dead}",
        log_format="json",
    )
    runtime = build_runtime(settings)
    client = TestClient(Starlette(routes=health_routes(runtime)))
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["database"].startswith("ok")
        assert checks["broker"].startswith("failing")
        assert checks["mcp"].startswith("failing") and "Connect" in checks["mcp"]
        assert client.get("/healthz").status_code == 200
    finally:
        await runtime.db.dispose()
