"""The local embedding endpoint (LOCAL-ONLY): the hashed bag-of-words model of `local_embeddings.py` behind a
serving endpoint, reached like a Foundation Model embedding endpoint (`POST /serving-endpoints/<name>/invocations`
with `{"input": [...]}`). Vector Search indexes name it in `embedding_source_columns`; on Databricks the same spec
names `databricks-gte-large-en`.

    from apev_workspace.serving.embeddings import ensure_local_embedding_endpoint
    ensure_local_embedding_endpoint(ws)  # "apev-local-embeddings", model main.apev.local_embeddings; idempotent
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apev_workspace.testing import RunningWorkspace

MODEL_FILE = Path(__file__).with_name("local_embeddings.py")
DEFAULT_ENDPOINT = "apev-local-embeddings"
DEFAULT_MODEL = "main.apev.local_embeddings"


def ensure_local_embedding_endpoint(
    ws: RunningWorkspace, name: str = DEFAULT_ENDPOINT, model: str = DEFAULT_MODEL, workload_size: str = "Medium"
) -> str:
    """Register the embedding model and serve it at `name` (not scaled to zero), waiting until READY."""
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    from apev_workspace.serving.testing import register_version, wait_endpoint

    w = ws.client()
    try:
        w.serving_endpoints.get(name)
    except NotFound:
        version = register_version(ws, model, MODEL_FILE.read_text("utf-8"))
        entity = ServedEntityInput(
            entity_name=model, entity_version=str(version), workload_size=workload_size, scale_to_zero_enabled=False
        )
        w.serving_endpoints.create(name=name, config=EndpointCoreConfigInput(name=name, served_entities=[entity]))
    endpoint = wait_endpoint(w, name, timeout=60)
    assert endpoint.state is not None and endpoint.state.ready is not None
    if endpoint.state.ready.value != "READY":
        raise RuntimeError(f"local embedding endpoint {name} is not READY: {endpoint.state}")
    return name
