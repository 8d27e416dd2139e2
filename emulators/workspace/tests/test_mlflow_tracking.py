"""The MLflow tracking API against the real `mlflow` client (tracking URI `databricks`, unchanged), the SDK's
`w.experiments`, experiment ACLs, persistence across a restart, the pages, and a model version's run id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databricks.sdk.errors import InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service import ml

from apev_workspace.serving.testing import wait_version
from apev_workspace.testing import RunningWorkspace, running_workspace


@pytest.fixture
def mlflow_as(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`mlflow` pointed at a workspace with a token, through the environment as on Databricks."""
    import mlflow

    def use(ws: RunningWorkspace, token: str | None = None) -> Any:
        monkeypatch.setenv("DATABRICKS_HOST", ws.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", token or ws.admin_token)
        mlflow.set_tracking_uri("databricks")
        return mlflow

    yield use
    mlflow.set_tracking_uri(None)


def test_the_mlflow_client_records_a_run_and_it_survives_a_restart(tmp_path: Path, mlflow_as: Any) -> None:
    data = tmp_path / "ws"
    with running_workspace(data) as ws:
        mlflow = mlflow_as(ws)
        ws.client().workspace.mkdirs("/Shared/apev-tests")
        experiment = mlflow.set_experiment("/Shared/apev-tests/deploys")
        assert mlflow.set_experiment("/Shared/apev-tests/deploys").experiment_id == experiment.experiment_id
        with mlflow.start_run(run_name="deploy-1", tags={"ap_agent_id": "demo"}) as run:
            mlflow.log_params({"model_source": "/Shared/m.py", "questions": 4})
            mlflow.log_param("threshold", 0.75)
            mlflow.log_metric("answer_accuracy", 0.5, step=0)
            mlflow.log_metric("answer_accuracy", 0.75, step=1)
            mlflow.log_metrics({"latency_p95_ms": 812.5, "latency_mean_ms": 400.25})
            mlflow.set_tag("outcome", "passed")
        with mlflow.start_run(run_name="deploy-2") as other:
            mlflow.log_metric("answer_accuracy", 0.25)
        client = mlflow.MlflowClient()
        got = client.get_run(run.info.run_id)
        assert got.info.status == "FINISHED" and got.info.end_time >= got.info.start_time
        assert got.info.run_name == "deploy-1" and got.info.experiment_id == experiment.experiment_id
        assert got.data.metrics == {"answer_accuracy": 0.75, "latency_p95_ms": 812.5, "latency_mean_ms": 400.25}
        assert got.data.params == {"model_source": "/Shared/m.py", "questions": "4", "threshold": "0.75"}
        assert got.data.tags["outcome"] == "passed" and got.data.tags["ap_agent_id"] == "demo"
        assert [m.value for m in client.get_metric_history(run.info.run_id, "answer_accuracy")] == [0.5, 0.75]

        ids = [experiment.experiment_id]
        passed = client.search_runs(ids, "metrics.answer_accuracy >= 0.7 AND tags.outcome = 'passed'")
        assert [r.info.run_id for r in passed] == [run.info.run_id]
        ordered = client.search_runs(ids, order_by=["metrics.answer_accuracy ASC"])
        assert [r.info.run_id for r in ordered] == [other.info.run_id, run.info.run_id]
        assert [r.info.run_id for r in client.search_runs(ids, "attributes.run_name LIKE 'deploy-%'")] == [
            other.info.run_id,
            run.info.run_id,
        ]  # newest first
        page = client.search_runs(ids, max_results=1)
        assert len(page) == 1 and page.token
        found = client.search_experiments(filter_string="name LIKE '/Shared/apev-tests/%'")
        assert [e.experiment_id for e in found] == [experiment.experiment_id]

        with pytest.raises(mlflow.exceptions.MlflowException, match="Changing param values is not allowed"):
            client.log_param(run.info.run_id, "threshold", 0.9)
        with pytest.raises(mlflow.exceptions.MlflowException, match="absolute path"):
            client.create_experiment("relative-name")
        with pytest.raises(mlflow.exceptions.MlflowException, match="Parent directory /Shared/nowhere does not"):
            client.create_experiment("/Shared/nowhere/x")
        with pytest.raises(mlflow.exceptions.MlflowException, match="already exists"):
            client.create_experiment("/Shared/apev-tests/deploys")
        client.delete_run(other.info.run_id)
        with pytest.raises(mlflow.exceptions.MlflowException, match="must be in the 'active' state"):
            client.log_metric(other.info.run_id, "answer_accuracy", 1.0)
        assert [r.info.run_id for r in client.search_runs(ids)] == [run.info.run_id]

        # the run page and the experiment page, reached from Databricks' run link through the home page
        html = httpx.get(f"{ws.host}/mlflow/experiments/{experiment.experiment_id}/runs/{run.info.run_id}").text
        assert "answer_accuracy" in html and "0.75" in html and "812.5" in html and "/Shared/m.py" in html
        assert "deploy-1" in httpx.get(f"{ws.host}/mlflow/experiments/{experiment.experiment_id}").text
        assert "#mlflow" not in html and "mlflow\\/experiments" in httpx.get(f"{ws.host}/").text
        assert httpx.get(f"{ws.host}/mlflow/experiments/{experiment.experiment_id}/runs/{'0' * 32}").status_code == 404

    with running_workspace(data) as ws:
        again = ws.client().experiments.get_run(run.info.run_id).run
        assert again is not None and again.info is not None and again.data is not None
        assert again.info.status == ml.RunInfoStatus.FINISHED
        assert {m.key: m.value for m in again.data.metrics or []}["answer_accuracy"] == 0.75
        assert {p.key: p.value for p in again.data.params or []}["questions"] == "4"
        assert ws.client().experiments.get_by_name("/Shared/apev-tests/deploys").experiment.experiment_id == (
            experiment.experiment_id
        )


def test_experiments_are_private_to_their_owner_until_shared(ws: RunningWorkspace) -> None:
    admin = ws.client()
    tokens = {}
    for name in ("agent_a", "agent_b"):
        sp = admin.service_principals.create(display_name=name)
        tokens[name] = admin.token_management.create_obo_token(application_id=sp.application_id).token_value
        tokens[name + "_id"] = sp.application_id
    a, b = ws.client(token=tokens["agent_a"]), ws.client(token=tokens["agent_b"])
    home = f"/Users/{tokens['agent_a_id']}"
    a.workspace.mkdirs(home)
    experiment_id = a.experiments.create_experiment(f"{home}/agent-a").experiment_id
    run = a.experiments.create_run(experiment_id=experiment_id, run_name="deploy").run
    assert run is not None and run.info is not None
    a.experiments.log_metric(run_id=run.info.run_id, key="answer_accuracy", value=1.0, timestamp=1)

    with pytest.raises(PermissionDenied):
        b.experiments.get_experiment(experiment_id)
    with pytest.raises(PermissionDenied):
        b.experiments.get_run(run.info.run_id)
    assert [e.experiment_id for e in b.experiments.search_experiments()] == []
    assert admin.experiments.get_run(run.info.run_id).run is not None  # admins read every experiment

    admin.experiments.set_permissions(
        experiment_id,
        access_control_list=[
            ml.ExperimentAccessControlRequest(
                service_principal_name=tokens["agent_b_id"], permission_level=ml.ExperimentPermissionLevel.CAN_READ
            )
        ],
    )
    assert b.experiments.get_run(run.info.run_id).run is not None
    with pytest.raises(PermissionDenied):
        b.experiments.log_param(run_id=run.info.run_id, key="x", value="1")
    with pytest.raises(NotFound):
        b.experiments.get_run("f" * 32)
    with pytest.raises(InvalidParameterValue, match="Invalid filter clause"):
        list(a.experiments.search_runs(experiment_ids=[experiment_id], filter="metrics.answer_accuracy ~ 1"))
    with pytest.raises(InvalidParameterValue, match="compare with numbers"):
        list(a.experiments.search_runs(experiment_ids=[experiment_id], filter="metrics.answer_accuracy = 'high'"))


def test_a_model_version_carries_its_run_id(ws: RunningWorkspace) -> None:
    from apev_workspace.serving.testing import ensure_model
    from apev_workspace.testing import upload

    w = ws.client()
    w.catalogs.create(name="main")
    w.schemas.create(name="agents", catalog_name="main")
    ensure_model(ws, "main.agents.m")
    upload(w, "/Shared/models/m.py", "def predict(inputs):\n    return inputs\n")
    made = w.api_client.do(
        "POST",
        "/api/2.0/mlflow/unity-catalog/model-versions/create",
        body={"name": "main.agents.m", "source": "/Shared/models/m.py", "run_id": "a" * 32},
    )
    version = int(made["model_version"]["version"])  # type: ignore[index]
    assert made["model_version"]["run_id"] == "a" * 32  # type: ignore[index]
    assert w.model_versions.get("main.agents.m", version).run_id == "a" * 32
    assert wait_version(w, "main.agents.m", version) == "READY"
