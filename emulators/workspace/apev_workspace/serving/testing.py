"""Helpers for tests that need a registered model behind a serving endpoint (any team's tests).

from apev_workspace.serving.testing import register_version, wait_endpoint

version = register_version(ws, "main.agents.echo", "def predict(inputs):\\n    return {'echo': inputs}\\n")
w.serving_endpoints.create(name="echo", config=EndpointCoreConfigInput(name="echo", served_entities=[
    ServedEntityInput(entity_name="main.agents.echo", entity_version=str(version), workload_size="Small")]))
wait_endpoint(w, "echo")
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ServingEndpointDetailed

    from apev_workspace.testing import RunningWorkspace


def ensure_model(ws: RunningWorkspace, full_name: str) -> None:
    """Create the registered model (and, where Unity Catalog is present, its catalog and schema) if missing."""
    from databricks.sdk.errors import NotFound, ResourceAlreadyExists

    w = ws.client()
    catalog, schema, name = full_name.split(".")
    if getattr(ws.workspace, "uc", None) is not None:
        for create in (lambda: w.catalogs.create(catalog), lambda: w.schemas.create(schema, catalog)):
            with contextlib.suppress(ResourceAlreadyExists):
                create()
    try:
        w.registered_models.get(full_name)
    except NotFound:
        w.registered_models.create(catalog_name=catalog, schema_name=schema, name=name)


def register_version(
    ws: RunningWorkspace, full_name: str, code: str, *, wait: bool = True, token: str | None = None
) -> int:
    """Upload `code` as a workspace file and register it through the MLflow Unity Catalog registry path
    (`POST /api/2.0/mlflow/unity-catalog/model-versions/create {name, source}`); wait for READY."""
    from apev_workspace.testing import upload

    ensure_model(ws, full_name)
    w = ws.client(token=token)
    path = upload(w, f"/Shared/models/{full_name}/model_{time.monotonic_ns()}.py", code)
    with ws.admin_http() as http:
        if token:
            http.headers["Authorization"] = f"Bearer {token}"
        response = http.post(
            "/api/2.0/mlflow/unity-catalog/model-versions/create", json={"name": full_name, "source": path}
        )
        response.raise_for_status()
        version = int(response.json()["model_version"]["version"])
    if wait:
        wait_version(w, full_name, version)
    return version


def wait_version(w: WorkspaceClient, full_name: str, version: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = w.model_versions.get(full_name, version).status
        value = status.value if status is not None else ""
        if value != "PENDING_REGISTRATION":
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"model version {full_name}/{version} stayed PENDING_REGISTRATION")
        time.sleep(0.02)


def wait_endpoint(w: WorkspaceClient, name: str, timeout: float = 30, **expected: Any) -> ServingEndpointDetailed:
    """Poll every 20 ms (the SDK's waiter sleeps seconds) until the endpoint is no longer updating."""
    deadline = time.monotonic() + timeout
    while True:
        endpoint = w.serving_endpoints.get(name)
        assert endpoint.state is not None and endpoint.state.config_update is not None
        if endpoint.state.config_update.value != "IN_PROGRESS":
            return endpoint
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} is still updating: {endpoint.state}")
        time.sleep(0.02)
