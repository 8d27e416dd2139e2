"""`tenant.offboarded` in the serving service: tenant A's agent endpoint, agent principal (its OBO token and OAuth
secret), registered model, token secret, SQL cache entries and serving rows go; tenant B's agent keeps answering
and B's cached SQL stays. A second offboarding after ingest dropped the catalog (order between services is not
guaranteed) finds everything gone and changes nothing more."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from sqlalchemy import func, select

from apev_contracts import TenantOffboarded, naming, topics
from apev_contracts.envelope import new_event
from apev_contracts.topics import dlq_topic
from apev_pipeline.agents import demo_agent_path
from apev_runtime.db.tables import inbox
from apev_runtime.delivery.tools import read_dlq
from apev_serving import tables

from .conftest import Stack, provision_reader

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

QUESTION = "What are our top performing locations?"
STATEMENT = "SELECT practice_location, production FROM gold.monthly_kpis ORDER BY production DESC LIMIT 2"


async def _register(stack: Stack, tenant: str, agent_id: str) -> dict[str, Any]:
    body = {"agent_id": agent_id, "name": f"Agent {agent_id}", "model_source": demo_agent_path(),
            "tables": ["gold.monthly_kpis"]}  # fmt: skip
    async with stack.http(tenant) as http:
        r = await http.post("/api/v1/agents", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


async def _wait_serving(stack: Stack, tenant: str, agent_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with stack.http(tenant) as http:
            body = (await http.get(f"/api/v1/agents/{agent_id}")).json()
        if body["state"] == "serving" and body["endpoint"]["ready"] == "READY":
            return
        assert body["state"] not in ("failed", "deploy_failed"), body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def _query(stack: Stack, tenant: str) -> dict[str, Any]:
    async with stack.http(tenant) as http:
        r = await http.post("/api/v1/databricks/sql/query", json={"statement": STATEMENT})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _principal(w: WorkspaceClient, name: str) -> Any:
    found = [sp for sp in w.service_principals.list(filter=f'displayName eq "{name}"') if sp.display_name == name]
    return found[0] if found else None


def _experiments(w: WorkspaceClient, agent_id: str) -> list[str]:
    names = [str(e.name) for e in w.experiments.search_experiments()]
    return [n for n in names if n.endswith(f"/agentprovision/{agent_id}")]


async def _rows(stack: Stack, tenant: str) -> dict[str, int]:
    counts = {}
    async with stack.serving.db.engine.connect() as conn:
        for table in (tables.agents, tables.endpoints, tables.insights, tables.insight_watermarks):
            n = await conn.scalar(select(func.count()).select_from(table).where(table.c.tenant_id == tenant))
            counts[table.name] = int(n or 0)
        counts["serving_versions"] = int(
            await conn.scalar(
                select(func.count()).select_from(tables.versions).where(tables.versions.c.agent_id == "offa")
            )
            or 0
        )
    return counts


async def _handled(stack: Stack, event_id: str, timeout: float = 30) -> None:
    """The event's inbox row of the service's offboarding subscriber (written with its final transaction)."""
    deadline = time.monotonic() + timeout
    while True:
        async with stack.serving.db.engine.connect() as conn:
            consumers = set(
                (await conn.execute(select(inbox.c.consumer).where(inbox.c.event_id == event_id))).scalars()
            )
        if any(".sql-cache." not in c for c in consumers) and any(".sql-cache." in c for c in consumers):
            return
        assert time.monotonic() < deadline, consumers
        await asyncio.sleep(0.1)


async def test_offboarding_removes_the_tenants_agents_and_spares_the_other(stack: Stack) -> None:
    w = stack.ws.client()
    a, *_ = await asyncio.gather(
        _register(stack, "tenant-a", "offa"),
        _register(stack, "tenant-b", "offb"),
        asyncio.to_thread(provision_reader, w, "tenant-a"),
        asyncio.to_thread(provision_reader, w, "tenant-b"),
    )
    await asyncio.gather(_wait_serving(stack, "tenant-a", "offa"), _wait_serving(stack, "tenant-b", "offb"))

    # What tenant A's agent holds in the workspace, read before it goes.
    sp = _principal(w, naming.agent_principal("offa"))
    assert sp is not None and sp.application_id == a["principal_id"]
    secret = w.service_principal_secrets_proxy.create(service_principal_id=str(sp.id), lifetime="3600s")
    assert secret.id
    scope, key = naming.secret_scope("tenant-a"), f"{naming.agent_principal('offa')}_token"
    token = base64.b64decode(str(w.secrets.get_secret(scope, key).value)).decode()
    assert WorkspaceClient(host=stack.ws.host, token=token, auth_type="pat").current_user.me().user_name
    assert any(t.owner_id == int(str(sp.id)) for t in w.token_management.list())
    assert w.registered_models.get(a["model_name"]).full_name == a["model_name"]
    assert _experiments(w, "offa") and _experiments(w, "offb")  # the deploy runs' experiments
    assert {"agent-offa", "agent-offb"} <= {e.name for e in w.serving_endpoints.list()}
    assert (await _query(stack, "tenant-a"))["cache"] == "miss"
    assert (await _query(stack, "tenant-a"))["cache"] == "hit"
    assert (await _query(stack, "tenant-b"))["cache"] == "miss"
    assert (await _rows(stack, "tenant-a"))["serving_agents"] == 1

    event = new_event(TenantOffboarded(tenant_id="tenant-a", reason="left"), tenant_id="tenant-a", source="tests")
    await stack.send(event)
    await _handled(stack, event.id)

    endpoints = {e.name for e in w.serving_endpoints.list()}
    assert "agent-offa" not in endpoints and "agent-offb" in endpoints
    assert _principal(w, naming.agent_principal("offa")) is None
    assert _principal(w, naming.agent_principal("offb")) is not None
    assert not any(t.owner_id == int(str(sp.id)) for t in w.token_management.list())
    with pytest.raises(Exception, match=r"(?i)invalid|unauth|revoked|expired"):
        WorkspaceClient(host=stack.ws.host, token=token, auth_type="pat").current_user.me()
    with pytest.raises(NotFound):
        w.secrets.get_secret(scope, key)
    with pytest.raises(NotFound):
        w.registered_models.get(a["model_name"])
    assert w.registered_models.get(naming.catalog_name("tenant-b") + ".agents.offb").full_name
    assert _experiments(w, "offa") == [] and _experiments(w, "offb")
    assert await _rows(stack, "tenant-a") == {
        "serving_agents": 0, "serving_endpoints": 0, "serving_insights": 0, "serving_insight_watermarks": 0,
        "serving_versions": 0}  # fmt: skip
    assert (await _rows(stack, "tenant-b"))["serving_agents"] == 1

    async with stack.http("tenant-a") as http:
        assert (await http.get("/api/v1/agents/offa")).status_code == 404
        assert (await http.post("/api/v1/agents/offa/invoke", json={"input": {"query": QUESTION}})).status_code == 404
    assert (await _query(stack, "tenant-a"))["cache"] == "miss"  # the tenant's cached result went
    assert (await _query(stack, "tenant-b"))["cache"] == "hit"  # another tenant's stays
    async with stack.http("tenant-b") as http:
        r = await stack.invoke(http, "offb", QUESTION)
        assert r.status_code == 200, r.text
        assert r.json()["output"]["citations"][0]["table"] == f"{naming.catalog_name('tenant-b')}.gold.monthly_kpis"

    # Ingest dropped the catalog meanwhile; a second request for the same tenant finds nothing left to remove.
    w.catalogs.delete(naming.catalog_name("tenant-a"), force=True)
    again = new_event(TenantOffboarded(tenant_id="tenant-a"), tenant_id="tenant-a", source="tests")
    await stack.send(again)
    await _handled(stack, again.id)
    assert {e.name for e in w.serving_endpoints.list()} == endpoints
    dead = await read_dlq(stack.bootstrap, stack.prefix + dlq_topic(topics.TENANT_OFFBOARDED), timeout_ms=500)
    assert dead == [], [m.letter for m in dead]  # neither request failed
    async with stack.http("tenant-b") as http:
        assert (await stack.invoke(http, "offb", QUESTION)).status_code == 200
