"""Agents that retrieve: MCP documents -> ingest runs through the jobs service -> `gold.knowledge_chunks` -> the
tenant's Delta Sync index (made and synced by serving on the ingest run's `run.finished`) -> the agent's
`search_documents` tool, as the agent's own principal.

The oracle for "the right document" is an exact search done here: every row of the tenant's
`gold.knowledge_chunks` (read with SQL) embedded with the same local model and ranked by cosine similarity.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service import catalog, workspace

from apev_contracts import naming
from apev_contracts.envelope import new_event
from apev_mcpsim.testing import RunningMcp, running_mcp
from apev_pipeline import IngestJobInput, build_ingest_job
from apev_pipeline.agents import demo_agent_path
from apev_workspace.serving.embeddings import ensure_local_embedding_endpoint
from apev_workspace.serving.local_embeddings import embed
from apev_workspace.testing import RunningWorkspace

from .conftest import Stack, sql

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]
TENANTS = ("tenant-a", "tenant-b")
QUESTION = "What does the {title} say about crowns and the annual maximum?"


@pytest.fixture(scope="module")
def mcp(workspace: RunningWorkspace) -> Iterator[RunningMcp]:
    ensure_local_embedding_endpoint(workspace)
    with running_mcp(locations=2, days=10, webhook_backoff=0.05) as running:
        yield running


def _provision_ingest(w: WorkspaceClient, mcp: RunningMcp, tenant_id: str) -> dict[str, str]:
    """What ingest does for a data source (the catalog and schemas exist already: conftest seeds gold)."""
    cat, code = naming.catalog_name(tenant_id), mcp.new_tenant()
    key = mcp.tenant_key(code)
    w.volumes.create(catalog_name=cat, schema_name="bronze", name="landing", volume_type=catalog.VolumeType.MANAGED)
    sp = w.service_principals.create(display_name=naming.pipeline_principal(tenant_id))
    app, p = str(sp.application_id), catalog.Privilege
    change = catalog.PermissionsChange(
        principal=app, add=[p.USE_CATALOG, p.USE_SCHEMA, p.SELECT, p.MODIFY, p.CREATE_TABLE, p.CREATE_FUNCTION]
    )
    w.grants.update("catalog", cat, changes=[change])
    volume = catalog.PermissionsChange(principal=app, add=[p.READ_VOLUME, p.WRITE_VOLUME])
    w.grants.update("volume", f"{cat}.bronze.landing", changes=[volume])
    scope = naming.secret_scope(tenant_id)
    w.secrets.create_scope(scope=scope)
    w.secrets.put_secret(scope=scope, key="mcp_api_key", string_value=key)
    w.secrets.put_secret(scope=scope, key="mcp_base_url", string_value=mcp.base_url)
    w.secrets.put_acl(scope=scope, principal=app, permission=workspace.AclPermission.READ)
    httpx.post(
        f"{mcp.base_url}/api/v1/integrations/register",
        json={"integration_type": "netsuite", "datasource_id": "docs-1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).raise_for_status()
    return {"code": code, "key": key}


async def _ingest(stack: Stack, tenant_id: str, run_key: str) -> None:
    """A `job.requested` for the tenant's documents data source: the jobs service creates (or resets) and runs it."""
    w = stack.ws.client()
    built = build_ingest_job(
        IngestJobInput(tenant_id=tenant_id, datasource_id="docs-1", system="netsuite", entities=["documents"])
    )
    for file in built.files:
        w.workspace.mkdirs(file.path.rsplit("/", 1)[0])
        content = base64.b64encode(file.content.encode()).decode()
        w.workspace.import_(path=file.path, content=content, format=workspace.ImportFormat.AUTO, overwrite=True)
    event = new_event(built.request(run=True), tenant_id=tenant_id, source="/tests/retrieval", id=run_key)
    await stack.send(event)


def _chunks(w: WorkspaceClient, tenant_id: str) -> list[list[Any]]:
    return sql(w, f"SELECT chunk_id, document_id, title, chunk_text FROM {naming.knowledge_chunks_table(tenant_id)}")


def _vectors(w: WorkspaceClient, tenant_id: str) -> list[tuple[str, list[float]]]:
    """(document id, embedding) of every chunk of the tenant's gold.knowledge_chunks, read with SQL."""
    return [(str(r[1]), embed(str(r[3]))) for r in _chunks(w, tenant_id)]


def _ranked(vectors: list[tuple[str, list[float]]], question: str) -> list[tuple[float, str]]:
    """(cosine, document id) of every chunk, best first: an exact search done here, outside the index."""
    q = embed(question)
    return sorted(((sum(a * b for a, b in zip(q, v, strict=True)), d) for d, v in vectors), reverse=True)


def _top(vectors: list[tuple[str, list[float]]], question: str) -> set[str]:
    """The documents of the chunks ranked first (more than one only on a tie within 1e-6)."""
    ranked = _ranked(vectors, question)
    return {d for s, d in ranked if ranked[0][0] - s < 1e-6}


def _question(mcp: RunningMcp, key: str, vectors: list[tuple[str, list[float]]]) -> str:
    """A contract question whose best document is unambiguous (the first such contract title, in order)."""
    for title in _contract_titles(mcp, key):
        question = QUESTION.format(title=title)
        if len(_top(vectors, question)) == 1:
            return question
    raise AssertionError("every contract question has a tie")


async def _wait_index(stack: Stack, tenant_id: str, timeout: float = 180) -> None:
    """Until serving has built (or synced) the index and it holds every chunk of the table."""
    w = stack.ws.client()
    name, deadline = naming.knowledge_index(tenant_id), time.monotonic() + timeout
    while True:
        try:
            status = w.vector_search_indexes.get_index(name).status
            count = len(_chunks(w, tenant_id))
            if status and status.ready and status.indexed_row_count == count and "NO_PENDING" in (status.message or ""):
                return
        except Exception as exc:
            status = exc  # type: ignore[assignment]
        assert time.monotonic() < deadline, f"index of {tenant_id} not ready: {status}"
        await asyncio.sleep(0.25)


async def _register(stack: Stack, tenant_id: str, agent_id: str) -> dict[str, Any]:
    async with stack.http(tenant_id) as http:
        r = await http.post(
            "/api/v1/agents",
            json={
                "agent_id": agent_id,
                "name": "Docs agent",
                "model_source": demo_agent_path(),
                "tables": ["gold.knowledge_chunks", "gold.monthly_kpis"],
            },
        )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 150
    while True:
        body = await stack.agent(agent_id, tenant_id)
        if body["state"] == "serving" and body["endpoint"]["ready"] == "READY":
            return dict(r.json())
        assert body["state"] not in ("failed", "deploy_failed") and time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def _ask(stack: Stack, tenant_id: str, agent_id: str, question: str) -> dict[str, Any]:
    async with stack.http(tenant_id) as http:
        r = await stack.invoke(http, agent_id, question)
    assert r.status_code == 200, r.text
    return dict(r.json()["output"])


def _documents(out: dict[str, Any]) -> list[dict[str, Any]]:
    (cited,) = [c for c in out["citations"] if c["query_id"] == "search_documents"]
    return list(cited["documents"])


@pytest.fixture(scope="module")
async def world(stack: Stack, mcp: RunningMcp) -> dict[str, Any]:
    w = stack.ws.client()
    mcp_tenants = {t: _provision_ingest(w, mcp, t) for t in TENANTS}
    for t in TENANTS:
        await _ingest(stack, t, f"retrieval-first-{t}")
    for t in TENANTS:
        await _wait_index(stack, t)
    registered = await asyncio.gather(*(_register(stack, t, f"docs-{t[-1]}") for t in TENANTS))
    agents = dict(zip(TENANTS, registered, strict=True))
    return {"mcp": mcp_tenants, "agents": agents}


def _contract_titles(mcp: RunningMcp, key: str) -> list[str]:
    response = httpx.get(
        f"{mcp.base_url}/api/v1/data/documents",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    return sorted({str(d["TITLE"]) for d in response.json() if d["DOC_TYPE"] == "payer_contract"})


async def test_a_document_question_cites_what_an_exact_search_ranks_first(
    stack: Stack, mcp: RunningMcp, world: dict[str, Any]
) -> None:
    w = stack.ws.client()
    vectors = _vectors(w, "tenant-a")
    question = _question(mcp, world["mcp"]["tenant-a"]["key"], vectors)
    (expected,) = _top(vectors, question)
    out = await _ask(stack, "tenant-a", "docs-a", question)
    cited = _documents(out)
    assert cited[0]["document_id"] == expected, (cited, expected)
    assert f"({expected})" in out["answer"] and cited[0]["title"] in out["answer"]
    titles = {str(r[1]): str(r[2]) for r in _chunks(w, "tenant-a")}
    assert all(titles[d["document_id"]] == d["title"] for d in cited)  # ids and titles are the table's

    # tenant B asks the same: only B's documents (B's ids), never A's
    out_b = await _ask(stack, "tenant-b", "docs-b", question)
    ids_b = {d["document_id"] for d in _documents(out_b)}
    assert ids_b and ids_b <= {str(r[1]) for r in _chunks(w, "tenant-b")}
    assert not ids_b & set(titles)
    assert _documents(out_b)[0]["document_id"] in _top(_vectors(w, "tenant-b"), question)


async def test_a_question_needing_both_gets_sql_rows_and_documents(stack: Stack, world: dict[str, Any]) -> None:
    w = stack.ws.client()
    cat = naming.catalog_name("tenant-a")
    question = "What are our top 2 performing locations, and what does our cancellation policy say?"
    out = await _ask(stack, "tenant-a", "docs-a", question)
    by_tool = {c["query_id"]: c for c in out["citations"]}
    assert set(by_tool) == {"top_locations", "search_documents"}
    top = sql(w, f"SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2)) FROM {cat}.gold.monthly_kpis "
                 "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 2")  # fmt: skip
    assert [[r[0], r[1]] for r in by_tool["top_locations"]["rows"]] == top
    assert _documents(out)[0]["document_id"] in _top(_vectors(w, "tenant-a"), question)
    assert all(f"{loc} with {value}" in out["answer"] for loc, value in top)


async def test_the_second_wall_an_agent_principal_cannot_query_another_tenants_index(
    stack: Stack, world: dict[str, Any]
) -> None:
    w = stack.ws.client()
    app_id = world["agents"]["tenant-a"]["principal_id"]
    token = w.token_management.create_obo_token(application_id=app_id, lifetime_seconds=600).token_value
    as_agent_a = stack.ws.client(token=token)
    mine = as_agent_a.vector_search_indexes.query_index(
        naming.knowledge_index("tenant-a"), ["document_id"], query_text="crowns", num_results=1
    )
    assert mine.result is not None and mine.result.row_count == 1
    with pytest.raises(PermissionDenied):
        as_agent_a.vector_search_indexes.query_index(
            naming.knowledge_index("tenant-b"), ["document_id"], query_text="x"
        )


async def test_a_changed_document_is_retrieved_after_the_next_ingest_and_sync(
    stack: Stack, mcp: RunningMcp, world: dict[str, Any]
) -> None:
    w = stack.ws.client()
    key = world["mcp"]["tenant-a"]["key"]
    question = "Do zirconia crowns on molars need a pre-authorisation photograph?"
    before = _documents(await _ask(stack, "tenant-a", "docs-a", question))
    target = sorted(str(r[1]) for r in _chunks(w, "tenant-a") if str(r[1]) != before[0]["document_id"])[0]
    changed = httpx.post(
        f"{mcp.base_url}/api/v1/integrations/netsuite/update",
        json={"entity_type": "documents", "entity_id": target, "reason": "payer rule changed",
              "changes": {"BODY": "Zirconia crowns on molars now need a pre-authorisation photograph of the tooth."}},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "retrieval-change-1"},
        timeout=10,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert _documents(await _ask(stack, "tenant-a", "docs-a", question))[0]["document_id"] != target  # not yet
    await _ingest(stack, "tenant-a", "retrieval-second-tenant-a")
    deadline = time.monotonic() + 180
    while "zirconia" not in " ".join(str(r[3]).lower() for r in _chunks(w, "tenant-a") if str(r[1]) == target):
        assert time.monotonic() < deadline, "the second ingest run did not land the changed document"
        await asyncio.sleep(0.25)
    index = naming.knowledge_index("tenant-a")
    while True:  # serving syncs the index on that run's run.finished (nothing else syncs it)
        top = w.vector_search_indexes.query_index(index, ["document_id"], query_text=question, num_results=1)
        if top.result and top.result.data_array and top.result.data_array[0][0] == target:
            break
        assert time.monotonic() < deadline, "the index was not synced after the second ingest run"
        await asyncio.sleep(0.25)
    after = await _ask(stack, "tenant-a", "docs-a", question)
    assert _documents(after)[0]["document_id"] == target and _top(_vectors(w, "tenant-a"), question) == {target}
    assert "Zirconia crowns on molars now need a pre-authorisation photograph" in after["answer"]
    assert json.dumps(after).count(target) >= 1
