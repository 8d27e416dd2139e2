"""The monitor's lineage graph, asked over HTTP (services never import each other): which tables and landing
paths lie downstream of a dataset or an MCP entity, for the erasure's audit record.

    MonitorLineage(url, secret, ...).downstream_tables(tenant, node) -> LineageAnswer

Never raises: a monitor that is not configured, down or refusing gives an answer with `tables=None` and a note
saying why, and the erasure goes on with its catalog scan alone. The call carries a short-lived service token
(HS256 with `APEV_JWT_SECRET`, the erasure's tenant, role `analyst`, `sub` = `ingest:erasure`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog

from apev_runtime.auth import mint_token
from apev_runtime.http import NO_RETRY, CircuitOpenError, ResilientClient, resilient_client

log = structlog.get_logger("apev.ingest")

PATH = "/api/v1/lineage/downstream-tables"


@dataclass(frozen=True)
class LineageAnswer:
    tables: list[str] | None  # None: the graph was not available
    volumes: list[str] | None
    note: str


class MonitorLineage:
    def __init__(
        self,
        url: str | None,
        secret: str | None,
        *,
        issuer: str = "agentprovision",
        audience: str = "apev",
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.secret, self.issuer, self.audience = url, secret, issuer, audience
        self._client: ResilientClient | None = (
            resilient_client(url.rstrip("/"), timeout=timeout, retry=NO_RETRY, transport=transport) if url else None
        )

    async def downstream_tables(self, tenant: str, node: str) -> LineageAnswer:
        if self._client is None:
            return LineageAnswer(None, None, "catalog scan only: no monitor configured (INGEST_MONITOR_URL)")
        if not self.secret:
            return LineageAnswer(None, None, "catalog scan only: no APEV_JWT_SECRET to sign the monitor's token")
        token = mint_token(self.secret, tenant_id=tenant, roles=["analyst"], subject="ingest:erasure",
                           issuer=self.issuer, audience=self.audience, ttl_seconds=120)  # fmt: skip
        try:
            got = await self._client.get(
                PATH, params={"node": node, "tenant": tenant}, headers={"Authorization": f"Bearer {token}"}
            )
        except (httpx.HTTPError, CircuitOpenError) as exc:
            log.warning("erasure_lineage_unavailable", tenant_id=tenant, error=type(exc).__name__)
            return LineageAnswer(None, None, f"catalog scan only: the monitor is down ({type(exc).__name__})")
        if got.status_code == 404:
            return LineageAnswer([], [], f"lineage graph has no node {node!r} for the tenant; catalog scan")
        try:
            body = got.json()
        except ValueError:
            body = None
        if got.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("tables"), list):
            detail = body.get("detail") if isinstance(body, dict) else got.text[:200]
            log.warning("erasure_lineage_refused", tenant_id=tenant, status=got.status_code)
            return LineageAnswer(None, None, f"catalog scan only: the monitor answered {got.status_code}: {detail}")
        return LineageAnswer(
            sorted(str(t) for t in body["tables"]),
            sorted(str(v) for v in body.get("volumes") or []),
            "lineage graph and catalog scan",
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
