"""One client for the stand-ins' fault injection: the workspace, the MCP simulator and the sinks all take
`POST/GET/DELETE /__admin/faults` with the same rule shape (see emulators/workspace/README.md, "Fault
injection"). `headers` carries what a stand-in wants on its admin routes (the MCP simulator's admin key)."""

from __future__ import annotations

from typing import Any

import httpx


class FaultClient:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = headers or {}

    def _call(self, method: str, body: Any = None) -> Any:
        response = httpx.request(
            method, f"{self.base_url}/__admin/faults", json=body, headers=self.headers, timeout=10.0
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def add(self, action: str, path: str, **options: Any) -> dict[str, Any]:
        """`add("429", "/v2/enqueue", count=2, retry_after=0)`; options: method, count, ratio, retry_after,
        status, latency_ms."""
        rule: dict[str, Any] = self._call("POST", {"action": action, "path": path, **options})
        return rule

    def list(self) -> list[dict[str, Any]]:
        body = self._call("GET")
        rules: list[dict[str, Any]] = body["faults"] if isinstance(body, dict) else body
        return rules

    def clear(self) -> None:
        self._call("DELETE")
