"""Run the simulator for tests: ``with running_mcp() as mcp: ...`` and the ``mcp_sim`` pytest fixture.

The server runs in a background thread (its own event loop, uvicorn with h11, so an injected lost response
really drops the TCP connection) on a free port of 127.0.0.1. Use ``mcp.admin``/HTTP to drive it; the
``backend`` is there for assertions only (it lives on the server thread's loop).

Other teams' conftest.py: ``from apev_mcpsim.testing import mcp_sim  # noqa: F401``.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from apev_mcpsim.app import Simulator, create_simulator
from apev_mcpsim.models import Backend, SimConfig
from apev_mcpsim.server import bind
from apev_mcpsim.server import server as make_server


@dataclass
class RunningMcp:
    base_url: str
    admin_key: str
    simulator: Simulator

    @property
    def backend(self) -> Backend:
        return self.simulator.backend

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call a control endpoint (``/__admin/tick``, ``/__admin/faults``, ...) with the admin key."""
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        response = httpx.request(method, f"{self.base_url}{path}", json=json, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def tick(
        self, tenant_code: str | None = None, entity_types: list[str] | None = None, ratio: float | None = None
    ) -> Any:
        """Change a share of records; returns ``{tick, clock, changed: {tenant: {entity: count}}}``."""
        body = {"tenant_code": tenant_code, "entity_types": entity_types, "ratio": ratio}
        return self.admin("POST", "/__admin/tick", body)

    def add_fault(self, action: str, path: str, **options: Any) -> Any:
        """``add_fault("429", "/api/v1/integrations/*/data", count=2, retry_after=0)``; see `apev_mcpsim.faults`."""
        return self.admin("POST", "/__admin/faults", {"action": action, "path": path, **options})

    def clear_faults(self) -> None:
        self.admin("DELETE", "/__admin/faults")

    def counters(self) -> dict[str, int]:
        """Requests per ``METHOD route-template`` since the last `reset_counters`."""
        counts: dict[str, int] = self.admin("GET", "/__admin/counters")["counters"]
        return counts

    def reset_counters(self) -> None:
        self.admin("DELETE", "/__admin/counters")

    def sink_url(self, name: str) -> str:
        """A webhook receiver inside the simulator; `sink` reads back what it received."""
        return f"{self.base_url}/__admin/sink/{name}"

    def sink(self, name: str) -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = self.admin("GET", f"/__admin/sink/{name}")
        return received

    def new_tenant(self, prefix: str = "t", status: str = "active") -> str:
        """Create a fresh tenant (unique code) and return its code."""
        code = f"{prefix}-{secrets.token_hex(4)}"
        self.admin("POST", "/api/v1/tenants/", {"tenant_code": code, "tenant_name": code, "status": status})
        return code

    def tenant_key(self, tenant_code: str) -> str:
        response = httpx.post(
            f"{self.base_url}/api/v1/tenants/{tenant_code}/api-keys",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=10,
        )
        response.raise_for_status()
        key: str = response.json()["api_key"]
        return key


@contextmanager
def running_mcp(
    *, admin_key: str | None = None, seed: int = 42, host: str = "127.0.0.1", **config: Any
) -> Iterator[RunningMcp]:
    """Start a simulator (``config`` goes to `SimConfig`, e.g. ``webhook_backoff=0.05``); stop it on exit."""
    admin_key = admin_key or f"mcpadmin-{secrets.token_hex(12)}"
    sim = create_simulator(SimConfig(seed=seed, admin_key=admin_key, **config))
    sock = bind(host, 0)
    port = sock.getsockname()[1]
    server = make_server(sim, log_level="warning")
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the MCP simulator did not start")
        time.sleep(0.01)
    try:
        yield RunningMcp(f"http://{host}:{port}", admin_key, sim)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def mcp_sim() -> Iterator[RunningMcp]:
    """One simulator per test session, fast webhook retries. Tests should use their own tenants
    (``mcp_sim.new_tenant()``) and clear the faults they add."""
    with running_mcp(webhook_backoff=0.05, webhook_timeout=2.0) as mcp:
        yield mcp
