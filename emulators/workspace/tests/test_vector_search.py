"""Vector Search through databricks-sdk: endpoints, Delta Sync and Direct Access indexes, the local embedding
endpoint, filters, syncs that follow the source table, and Unity Catalog privileges on indexes.

One workspace for the module (the embedding endpoint's worker is the slow part to start)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    BadRequest,
    InvalidParameterValue,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from databricks.sdk.service import catalog, sql, vectorsearch
from databricks.sdk.service.vectorsearch import (
    DeltaSyncVectorIndexSpecRequest,
    DirectAccessVectorIndexSpec,
    EmbeddingSourceColumn,
    EmbeddingVectorColumn,
    EndpointType,
    PipelineType,
    VectorIndexType,
)

from apev_workspace.serving import local_embeddings
from apev_workspace.serving.embeddings import ensure_local_embedding_endpoint
from apev_workspace.testing import RunningWorkspace, running_workspace

DOCS = {
    "d1": ("Hygiene recall policy", "Patients are recalled for hygiene cleaning every six months by text message."),
    "d2": ("Delta Dental contract", "Delta Dental pays crowns at 50 percent after the annual deductible is met."),
    "d3": ("Staff meeting notes", "The team discussed parking, the new coffee machine and holiday schedules."),
    "d4": ("Cancellation policy", "Appointments cancelled with less than 24 hours notice incur a 50 dollar fee."),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorkspace]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DATABRICKS_")}
    os.environ["DATABRICKS_CONFIG_FILE"] = "/nonexistent/databrickscfg"
    try:
        with running_workspace(Path(tmp_path_factory.mktemp("vs")) / "ws") as running:
            running.workspace.serving.transition_seconds = 0.2
            running.workspace.vector_search.endpoint_provision_seconds = 0.0
            ensure_local_embedding_endpoint(running)
            yield running
    finally:
        os.environ.pop("DATABRICKS_CONFIG_FILE", None)
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_databricks_env() -> None:  # the module fixture above clears the environment once
    return None


def run_sql(w: WorkspaceClient, statement: str) -> None:
    wh = str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")
    assert done.status is not None and done.status.state == sql.StatementState.SUCCEEDED, (statement, done.status)


def make_docs(w: WorkspaceClient, cat: str, cdf: bool = True) -> str:
    w.catalogs.create(name=cat)
    w.schemas.create(name="gold", catalog_name=cat)
    props = " TBLPROPERTIES (delta.enableChangeDataFeed = true)" if cdf else ""
    run_sql(w, f"CREATE TABLE {cat}.gold.chunks (chunk_id STRING, doc_id STRING, title STRING, text STRING){props}")
    values = ", ".join(f"('{k}-0', '{k}', '{t}', '{x}')" for k, (t, x) in DOCS.items())
    run_sql(w, f"INSERT INTO {cat}.gold.chunks VALUES {values}")  # noqa: S608
    return f"{cat}.gold.chunks"


def wait_index(w: WorkspaceClient, name: str, rows: int | None = None, timeout: float = 30) -> vectorsearch.VectorIndex:
    deadline = time.monotonic() + timeout
    while True:
        index = w.vector_search_indexes.get_index(name)
        status = index.status
        assert status is not None and "FAILED" not in (status.message or ""), status
        settled = status.ready and (status.message or "").startswith("ONLINE_NO_PENDING_UPDATE")
        if settled and (rows is None or status.indexed_row_count == rows):
            return index
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def delta_index(w: WorkspaceClient, name: str, source: str, endpoint: str = "vs-main") -> None:
    spec = DeltaSyncVectorIndexSpecRequest(
        source_table=source,
        pipeline_type=PipelineType.TRIGGERED,
        embedding_source_columns=[
            EmbeddingSourceColumn(name="text", embedding_model_endpoint_name="apev-local-embeddings")
        ],
    )
    w.vector_search_indexes.create_index(
        name=name, endpoint_name=endpoint, primary_key="chunk_id", index_type=VectorIndexType.DELTA_SYNC,
        delta_sync_index_spec=spec,
    )  # fmt: skip


def ensure_endpoint(w: WorkspaceClient, name: str = "vs-main") -> None:
    try:
        w.vector_search_endpoints.get_endpoint(name)
    except NotFound:
        w.vector_search_endpoints.create_endpoint_and_wait(name=name, endpoint_type=EndpointType.STANDARD)


def test_the_embedder_is_deterministic_normalised_and_word_based() -> None:
    a = local_embeddings.embed("Crowns are paid at 50 percent")
    assert a == local_embeddings.embed("crowns ARE paid at 50 percent!")  # case and punctuation do not matter
    assert len(a) == local_embeddings.DIMENSION and math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-4)
    near = sum(x * y for x, y in zip(a, local_embeddings.embed("how are crowns paid"), strict=True))
    far = sum(x * y for x, y in zip(a, local_embeddings.embed("holiday parking schedule"), strict=True))
    assert near > 0.3 > far
    assert local_embeddings.embed("the and of") == [0.0] * local_embeddings.DIMENSION  # only stop words


def test_endpoints_create_get_list_delete(ws: RunningWorkspace) -> None:
    w = ws.client()
    info = w.vector_search_endpoints.create_endpoint_and_wait(name="vs-lifecycle", endpoint_type=EndpointType.STANDARD)
    assert info.endpoint_status is not None and info.endpoint_status.state == vectorsearch.EndpointStatusState.ONLINE
    assert "vs-lifecycle" in [e.name for e in w.vector_search_endpoints.list_endpoints()]
    with pytest.raises(ResourceAlreadyExists):
        w.vector_search_endpoints.create_endpoint(name="vs-lifecycle", endpoint_type=EndpointType.STANDARD)
    w.vector_search_endpoints.delete_endpoint("vs-lifecycle")
    with pytest.raises(NotFound):
        w.vector_search_endpoints.get_endpoint("vs-lifecycle")


def test_delta_sync_index_answers_query_text_with_filters_and_follows_syncs(ws: RunningWorkspace) -> None:
    w = ws.client()
    ensure_endpoint(w)
    source = make_docs(w, "vs_delta")
    name = "vs_delta.gold.chunks_index"
    delta_index(w, name, source)
    index = wait_index(w, name, rows=4)
    assert index.index_type == VectorIndexType.DELTA_SYNC and index.primary_key == "chunk_id"
    assert index.delta_sync_index_spec is not None and index.delta_sync_index_spec.source_table == source

    cols = ["chunk_id", "doc_id", "title"]
    found = w.vector_search_indexes.query_index(name, cols, query_text="How are crowns paid by Delta Dental?")
    assert found.manifest is not None and [c.name for c in found.manifest.columns or []] == [*cols, "score"]
    rows = found.result.data_array if found.result else []
    assert rows and rows[0][:3] == ["d2-0", "d2", "Delta Dental contract"] and len(rows) == 4
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)  # score, highest first
    top = w.vector_search_indexes.query_index(name, ["doc_id"], query_text="cancelled appointments fee", num_results=1)
    assert top.result is not None and top.result.data_array == [["d4", top.result.data_array[0][1]]]
    filtered = w.vector_search_indexes.query_index(
        name, ["doc_id"], query_text="crowns Delta Dental", filters_json=json.dumps({"doc_id": ["d1", "d3"]})
    )
    assert {r[0] for r in filtered.result.data_array or []} == {"d1", "d3"}  # type: ignore[union-attr]
    excluded = w.vector_search_indexes.query_index(
        name, ["doc_id"], query_text="crowns", filters_json=json.dumps({"doc_id NOT": "d2", "title LIKE": "policy"})
    )
    assert {r[0] for r in excluded.result.data_array or []} == {"d1", "d4"}  # type: ignore[union-attr]

    # the source changes: a new text for d3, d1 deleted; nothing moves until a sync, then exactly that
    run_sql(w, f"UPDATE {source} SET text = 'Crowns now need a pre-authorisation from the payer' WHERE doc_id = 'd3'")  # noqa: S608
    run_sql(w, f"DELETE FROM {source} WHERE doc_id = 'd1'")  # noqa: S608
    before = w.vector_search_indexes.query_index(name, ["doc_id"], query_text="pre-authorisation", num_results=1)
    assert before.result is not None and before.result.data_array[0][0] != "d3"  # type: ignore[index]
    w.vector_search_indexes.sync_index(name)
    wait_index(w, name, rows=3)
    after = w.vector_search_indexes.query_index(name, ["doc_id"], query_text="pre-authorisation", num_results=1)
    assert after.result is not None and after.result.data_array[0][0] == "d3"  # type: ignore[index]
    every = w.vector_search_indexes.query_index(name, ["doc_id"], query_vector=[0.0] * 256, num_results=10)
    assert sorted(r[0] for r in every.result.data_array or []) == ["d2", "d3", "d4"]  # type: ignore[union-attr]


def test_direct_access_upsert_query_vector_delete(ws: RunningWorkspace) -> None:
    w = ws.client()
    ensure_endpoint(w)
    w.catalogs.create(name="vs_direct")
    w.schemas.create(name="gold", catalog_name="vs_direct")
    name = "vs_direct.gold.points"
    spec = DirectAccessVectorIndexSpec(
        schema_json=json.dumps({"id": "string", "label": "string", "n": "integer", "vec": "array<float>"}),
        embedding_vector_columns=[EmbeddingVectorColumn(name="vec", embedding_dimension=3)],
    )
    w.vector_search_indexes.create_index(
        name=name, endpoint_name="vs-main", primary_key="id", index_type=VectorIndexType.DIRECT_ACCESS,
        direct_access_index_spec=spec,
    )  # fmt: skip
    rows = [
        {"id": "x", "label": "east", "n": 1, "vec": [1, 0, 0]},
        {"id": "y", "label": "north", "n": 2, "vec": [0, 1, 0]},
        {"id": "z", "label": "up", "n": 3, "vec": [0, 0, 1]},
        {"id": "bad", "label": "short", "n": 4, "vec": [1, 0]},
    ]
    up = w.vector_search_indexes.upsert_data_vector_index(name, json.dumps(rows))
    assert up.status == vectorsearch.UpsertDataStatus.PARTIAL_SUCCESS
    assert up.result is not None and up.result.success_row_count == 3 and up.result.failed_primary_keys == ["bad"]
    near = w.vector_search_indexes.query_index(name, ["id", "n"], query_vector=[0.9, 0.1, 0.0], num_results=2)
    assert [r[:2] for r in near.result.data_array or []] == [["x", 1], ["y", 2]]  # type: ignore[union-attr]
    assert near.result.data_array[0][2] > near.result.data_array[1][2]  # type: ignore[index,union-attr]
    bigger = w.vector_search_indexes.query_index(
        name, ["id"], query_vector=[0.9, 0.1, 0.0], filters_json=json.dumps({"n >=": 2})
    )
    assert [r[0] for r in bigger.result.data_array or []] == ["y", "z"]  # type: ignore[union-attr]
    w.vector_search_indexes.delete_data_vector_index(name, ["x", "y"])
    left = w.vector_search_indexes.query_index(name, ["id"], query_vector=[1.0, 0.0, 0.0])
    assert [r[0] for r in left.result.data_array or []] == ["z"]  # type: ignore[union-attr]
    assert w.vector_search_indexes.get_index(name).status.indexed_row_count == 1  # type: ignore[union-attr]
    with pytest.raises(InvalidParameterValue, match="query_text needs"):
        w.vector_search_indexes.query_index(name, ["id"], query_text="east")
    with pytest.raises(InvalidParameterValue, match="Direct Access"):
        w.vector_search_indexes.sync_index(name)
    assert name in [i.name for i in w.vector_search_indexes.list_indexes("vs-main")]
    w.vector_search_indexes.delete_index(name)
    with pytest.raises(NotFound):
        w.vector_search_indexes.get_index(name)


def test_unity_catalog_privileges_on_indexes(ws: RunningWorkspace) -> None:
    w = ws.client()
    ensure_endpoint(w)
    source = make_docs(w, "vs_acl")
    name = "vs_acl.gold.chunks_index"
    delta_index(w, name, source)
    wait_index(w, name, rows=4)
    sp = w.service_principals.create(display_name="vs-reader")
    app = str(sp.application_id)
    token = w.token_management.create_obo_token(application_id=app, lifetime_seconds=600).token_value
    reader = ws.client(token=token)
    with pytest.raises(PermissionDenied, match="USE CATALOG"):
        reader.vector_search_indexes.query_index(name, ["doc_id"], query_text="crowns")
    p = catalog.Privilege
    w.grants.update("catalog", "vs_acl", changes=[catalog.PermissionsChange(principal=app, add=[p.USE_CATALOG])])
    w.grants.update("schema", "vs_acl.gold", changes=[catalog.PermissionsChange(principal=app, add=[p.USE_SCHEMA])])
    with pytest.raises(PermissionDenied, match="SELECT"):
        reader.vector_search_indexes.query_index(name, ["doc_id"], query_text="crowns")
    w.grants.update("table", name, changes=[catalog.PermissionsChange(principal=app, add=[p.SELECT])])
    hit = reader.vector_search_indexes.query_index(name, ["doc_id"], query_text="crowns Delta Dental", num_results=1)
    assert hit.result is not None and hit.result.data_array[0][0] == "d2"  # type: ignore[index]
    assert name in [i.name for i in reader.vector_search_indexes.list_indexes("vs-main")]
    with pytest.raises(PermissionDenied, match="MODIFY"):
        reader.vector_search_indexes.sync_index(name)  # reading is not writing
    with pytest.raises(PermissionDenied):
        reader.vector_search_indexes.delete_index(name)


def test_refusals_name_what_is_wrong(ws: RunningWorkspace) -> None:
    w = ws.client()
    ensure_endpoint(w)
    source = make_docs(w, "vs_bad", cdf=False)
    with pytest.raises(InvalidParameterValue, match="Change Data Feed"):
        delta_index(w, "vs_bad.gold.chunks_index", source)
    run_sql(w, f"ALTER TABLE {source} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
    with pytest.raises(ResourceDoesNotExist):
        delta_index(w, "vs_bad.gold.chunks_index", source, endpoint="no-such-endpoint")
    bad_embedder = DeltaSyncVectorIndexSpecRequest(
        source_table=source,
        pipeline_type=PipelineType.TRIGGERED,
        embedding_source_columns=[EmbeddingSourceColumn(name="text", embedding_model_endpoint_name="nope")],
    )
    with pytest.raises(InvalidParameterValue, match="nope does not exist"):
        w.vector_search_indexes.create_index(
            name="vs_bad.gold.i2", endpoint_name="vs-main", primary_key="chunk_id",
            index_type=VectorIndexType.DELTA_SYNC, delta_sync_index_spec=bad_embedder,
        )  # fmt: skip
    delta_index(w, "vs_bad.gold.chunks_index", source)
    wait_index(w, "vs_bad.gold.chunks_index")
    with pytest.raises(ResourceAlreadyExists):
        delta_index(w, "vs_bad.gold.chunks_index", source)
    with pytest.raises(InvalidParameterValue, match="not in the index"):
        w.vector_search_indexes.query_index("vs_bad.gold.chunks_index", ["secret"], query_text="x")
    with pytest.raises(InvalidParameterValue, match="not a column of the index"):
        w.vector_search_indexes.query_index(
            "vs_bad.gold.chunks_index", ["doc_id"], query_text="x", filters_json='{"nope": 1}'
        )
    with pytest.raises((InvalidParameterValue, BadRequest)):
        w.vector_search_indexes.query_index("vs_bad.gold.chunks_index", ["doc_id"], query_vector=[1.0, 2.0])
    w.catalogs.delete("vs_bad", force=True)  # dropping the catalog drops its indexes
    with pytest.raises(NotFound):
        w.vector_search_indexes.get_index("vs_bad.gold.chunks_index")
