"""Model registry: UC registered models and versions, created through the MLflow Unity Catalog registry path."""

from __future__ import annotations

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists

from apev_workspace.serving.testing import ensure_model, register_version, wait_version
from apev_workspace.testing import RunningWorkspace, upload

ECHO = "def predict(inputs):\n    return {'echo': inputs}\n"


def test_version_registers_through_mlflow_path_and_reads_through_sdk(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    ensure_model(ws, "main.agents.echo")
    path = upload(w, "/Shared/models/echo.py", ECHO)
    with ws.admin_http() as http:
        created = http.post(
            "/api/2.0/mlflow/unity-catalog/model-versions/create", json={"name": "main.agents.echo", "source": path}
        )
    assert created.status_code == 200, created.text
    mv = created.json()["model_version"]
    assert mv["name"] == "main.agents.echo" and mv["version"] == "1" and mv["status"] == "PENDING_REGISTRATION"
    assert wait_version(w, "main.agents.echo", 1) == "READY"

    info = w.model_versions.get("main.agents.echo", 1)
    assert (info.catalog_name, info.schema_name, info.model_name, info.version) == ("main", "agents", "echo", 1)
    assert info.source == path and info.created_by == "admin@apev.local" and info.storage_location
    second = register_version(ws, "main.agents.echo", ECHO.replace("echo", "echo2"))
    assert second == 2
    assert [v.version for v in w.model_versions.list("main.agents.echo")] == [2, 1]

    model = w.registered_models.get("main.agents.echo")
    assert (model.full_name, model.owner) == ("main.agents.echo", "admin@apev.local")
    assert [m.full_name for m in w.registered_models.list(catalog_name="main", schema_name="agents")] == [
        "main.agents.echo"
    ]
    w.registered_models.set_alias("main.agents.echo", "champion", 2)
    assert w.model_versions.get_by_alias("main.agents.echo", "champion").version == 2
    with ws.admin_http() as http:
        got = http.get(
            "/api/2.0/mlflow/unity-catalog/model-versions/get", params={"name": "main.agents.echo", "version": 2}
        )
    assert got.json()["model_version"]["status"] == "READY"


def test_a_file_without_predict_fails_registration(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    version = register_version(ws, "main.agents.broken", "def not_predict():\n    pass\n", wait=False)
    assert wait_version(w, "main.agents.broken", version) == "FAILED_REGISTRATION"
    with ws.admin_http() as http:
        got = http.get(
            "/api/2.0/mlflow/unity-catalog/model-versions/get",
            params={"name": "main.agents.broken", "version": version},
        )
    assert "predict" in got.json()["model_version"]["status_message"]
    version = register_version(ws, "main.agents.broken", "raise RuntimeError('no GPU here')\n", wait=False)
    assert wait_version(w, "main.agents.broken", version) == "FAILED_REGISTRATION"


def test_errors_use_databricks_codes(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    with pytest.raises(NotFound):
        w.registered_models.get("main.agents.nothing")
    with ws.admin_http() as http:
        missing = http.post(
            "/api/2.0/mlflow/unity-catalog/model-versions/create",
            json={"name": "main.agents.nothing", "source": "/Shared/x.py"},
        )
        assert (missing.status_code, missing.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
        ensure_model(ws, "main.agents.a")
        bad_source = http.post(
            "/api/2.0/mlflow/unity-catalog/model-versions/create",
            json={"name": "main.agents.a", "source": "/Shared/not/there.py"},
        )
        assert (bad_source.status_code, bad_source.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
        bad_name = http.post("/api/2.0/mlflow/unity-catalog/registered-models/create", json={"name": "two.parts"})
        assert bad_name.status_code == 400
    with pytest.raises(ResourceAlreadyExists):
        w.registered_models.create(catalog_name="main", schema_name="agents", name="a")


def test_only_the_owner_registers_versions_and_deletes(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    ensure_model(ws, "main.agents.owned")
    sp = w.service_principals.create(display_name="tenant_t1_pipeline")
    token = w.token_management.create_obo_token(application_id=sp.application_id, lifetime_seconds=600).token_value
    other = ws.client(token=token)
    assert other.registered_models.get("main.agents.owned").owner == "admin@apev.local"
    with pytest.raises(PermissionDenied):
        other.registered_models.delete("main.agents.owned")
    version = register_version(ws, "main.agents.owned", ECHO)
    w.model_versions.delete("main.agents.owned", version)
    with pytest.raises(NotFound):
        w.model_versions.get("main.agents.owned", version)
    w.registered_models.delete("main.agents.owned")
    with pytest.raises(NotFound):
        w.registered_models.get("main.agents.owned")


def test_models_and_versions_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from apev_workspace.testing import running_workspace

    with running_workspace(tmp_path / "ws") as first:
        register_version(first, "main.agents.kept", ECHO)
    with running_workspace(tmp_path / "ws") as second:
        info = second.client().model_versions.get("main.agents.kept", 1)
        assert info.status is not None and info.status.value == "READY"


def test_the_catalog_and_schema_must_exist_in_unity_catalog(ws: RunningWorkspace, w: WorkspaceClient) -> None:
    if getattr(ws.workspace, "uc", None) is None:
        pytest.skip("this workspace has no Unity Catalog area")
    with pytest.raises(NotFound):
        w.registered_models.create(catalog_name="nowhere", schema_name="agents", name="m")
