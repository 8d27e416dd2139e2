"""agent_deploy: an MLflow run for this deployment, the agent's model file registered as a new Unity Catalog model
version carrying that run id, and a smoke test on a fixed question set whose answer accuracy and latency are the
run's metrics (a Databricks Python file task, run as the agent's principal `agent_<id>`, which owns its
registered model and its experiment).

Tracking is the `mlflow` client with tracking URI `databricks` (it reads DATABRICKS_HOST and DATABRICKS_TOKEN,
which the job gives the task). The experiment is created or reused by name: `--experiment`, or by default
`/Users/<the principal>/agentprovision/<agent id>` (a service principal's home folder: only it and admins read it).

Registration takes the MLflow Unity Catalog registry path (`POST /api/2.0/mlflow/unity-catalog/model-versions/
create {name, source, run_id}`, what `mlflow.register_model` calls with registry URI `databricks-uc`, without
its artifact upload: the version is the one file); the version is READY once the workspace has loaded it. The
smoke test imports the registered source and asks it each question with the agent's configuration; an answer is
right when every value of the question's `expect_sql` rows is in it. A question that raises counts as wrong. The
run is FINISHED when everything was measured (serving compares `answer_accuracy` with its threshold before it
rolls), FAILED when registration or measuring broke (and so is the job run). The version's comment names the job
run, so serving (on `run.finished`) finds the version this run made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from decimal import Decimal, InvalidOperation
from types import ModuleType
from typing import Any

from databricks.sdk import WorkspaceClient

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def register(w: WorkspaceClient, model: str, source: str, mlflow_run_id: str) -> int:
    made = w.api_client.do(
        "POST",
        "/api/2.0/mlflow/unity-catalog/model-versions/create",
        body={"name": model, "source": source, "run_id": mlflow_run_id},
    )
    version = int(made["model_version"]["version"])
    deadline = time.monotonic() + 300
    while True:
        info = w.model_versions.get(model, version)
        status = info.status.value if info.status else ""
        if status == "READY":
            return version
        if status != "PENDING_REGISTRATION":
            raise RuntimeError(f"model version {model}/{version} is {status}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"model version {model}/{version} stayed PENDING_REGISTRATION")
        time.sleep(0.1)


def load(w: WorkspaceClient, source: str, config: str) -> ModuleType:
    with w.workspace.download(source) as f:
        code = f.read()
    os.environ["APEV_AGENT_CONFIG"] = config
    with tempfile.TemporaryDirectory(prefix="agent-smoke-") as folder:
        path = os.path.join(folder, "model.py")
        with open(path, "wb") as out:
            out.write(code)
        spec = importlib.util.spec_from_file_location("agent_model", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["agent_model"] = module
        spec.loader.exec_module(module)
    return module


def expected_rows(w: WorkspaceClient, statement: str, warehouse_id: str | None) -> list[list[str | None]]:
    from databricks.sdk.service.sql import StatementState

    warehouse = warehouse_id or str(next(iter(w.warehouses.list())).id)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=warehouse, wait_timeout="30s")
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.05)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        error = done.status.error.message if done.status and done.status.error else "no status"
        raise RuntimeError(f"the smoke test's expected answer failed: {error}")
    return [list(r) for r in (done.result.data_array or [])] if done.result else []


def _numbers(text: str) -> set[Decimal]:
    out = set()
    for n in _NUMBER.findall(text):
        try:
            out.add(Decimal(n).normalize())
        except InvalidOperation:
            continue
    return out


def correct(answer: str, rows: list[list[str | None]]) -> bool:
    """Every value of the expected rows is in the answer: numbers compared as numbers, words as words."""
    if not rows:
        return False
    numbers = _numbers(answer)
    for row in rows:
        for value in row:
            if value is None:
                continue
            try:
                if Decimal(value).normalize() not in numbers:
                    return False
            except InvalidOperation:
                if value not in answer:
                    return False
    return True


def ask(module: ModuleType, question: str) -> tuple[str, float, str | None]:
    """(answer text, milliseconds, error)"""
    started = time.perf_counter()
    try:
        result = module.predict({"query": question, "context": {"smoke_test": True}})
        text = str(result.get("answer") or "") if isinstance(result, dict) else ""
        error = None if text else f"no answer: {result!r}"[:300]
    except Exception as exc:  # a model that raises answered wrong; the run records it
        text, error = "", f"{type(exc).__name__}: {exc}"[:300]
    return text, (time.perf_counter() - started) * 1000, error


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def smoke(
    w: WorkspaceClient, module: ModuleType, config: dict[str, Any], questions: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per question: right or wrong, latency, error. Only questions over tables the agent may read count."""
    tables = set(config.get("tables") or [])
    asked = []
    for q in questions:
        if not set(q.get("tables") or []) <= tables:
            continue
        rows = expected_rows(w, q["expect_sql"].format(catalog=config["catalog"]), config.get("warehouse_id"))
        text, ms, error = ask(module, q["question"])
        asked.append({"id": q["id"], "correct": error is None and correct(text, rows), "ms": ms, "error": error})
    return {"asked": asked}


def experiment_name(w: WorkspaceClient, given: str, agent_id: str) -> str:
    if given:
        return given
    me = w.current_user.me().user_name
    return f"/Users/{me}/agentprovision/{agent_id}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--accuracy-threshold", type=float, required=True)
    parser.add_argument("--experiment", default="")
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    import mlflow

    imported = time.perf_counter()
    w = WorkspaceClient()
    config = json.loads(args.config)
    name = experiment_name(w, args.experiment, args.agent_id)
    w.workspace.mkdirs(name.rsplit("/", 1)[0])
    mlflow.set_tracking_uri("databricks")
    experiment = mlflow.set_experiment(name)
    tags = {"ap_agent_id": args.agent_id, "ap_job_run_id": args.run_id, "mlflow.source.name": args.source}
    with mlflow.start_run(run_name=f"deploy-{args.run_id}", tags=tags) as run:
        mlflow.log_params(
            {
                "model_name": args.model_name,
                "model_source": args.source,
                "job_run_id": args.run_id,
                "catalog": config.get("catalog", ""),
                "tables": ",".join(config.get("tables") or []),
                "chat_endpoint": config.get("chat_endpoint", ""),
                "accuracy_threshold": args.accuracy_threshold,
            }
        )
        tracked = time.perf_counter()
        version = register(w, args.model_name, args.source, run.info.run_id)
        w.model_versions.update(args.model_name, version, comment=f"agent-deploy run {args.run_id}")
        mlflow.log_param("model_version", version)
        print(f"registered {args.model_name} version {version} from {args.source} (MLflow run {run.info.run_id})")
        result = smoke(w, load(w, args.source, args.config), config, json.loads(args.questions))
        asked = result["asked"]
        latencies = [a["ms"] for a in asked]
        metrics = {"questions": float(len(asked)), "answers_correct": float(sum(a["correct"] for a in asked))}
        if asked:
            metrics |= {
                "answer_accuracy": metrics["answers_correct"] / len(asked),
                "latency_mean_ms": sum(latencies) / len(latencies),
                "latency_p95_ms": percentile(latencies, 0.95),
                "latency_max_ms": max(latencies),
            }
        mlflow.log_metrics(metrics)
        for step, a in enumerate(asked):
            mlflow.log_metric("answer_correct", float(a["correct"]), step=step)
        wrong = {a["id"]: a["error"] or "wrong answer" for a in asked if not a["correct"]}
        passed = "answer_accuracy" not in metrics or metrics["answer_accuracy"] >= args.accuracy_threshold
        mlflow.set_tags({"ap_smoke": "passed" if passed else "below_threshold", "ap_wrong": json.dumps(wrong)[:5000]})
        tracking = (imported - started) + (tracked - imported)
    summary = {
        "experiment_id": experiment.experiment_id,
        "mlflow_run_id": run.info.run_id,
        "version": version,
        "metrics": metrics,
        "wrong": wrong,
        "mlflow_import_seconds": round(imported - started, 3),
        "mlflow_setup_seconds": round(tracking, 3),
    }
    print(f"smoke test: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
