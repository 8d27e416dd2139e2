"""Tracking endpoints in MLflow's REST shape (`/api/2.0/mlflow/...`, the JSON of MLflow's protos): what the
`mlflow` client sends with tracking URI `databricks`, and what databricks-sdk's `w.experiments` reads."""

from __future__ import annotations

import math
from typing import Any

from apev_workspace.core.exceptions import require
from apev_workspace.core.http import Call
from apev_workspace.tracking.exceptions import InvalidParameterValue
from apev_workspace.tracking.models import latest

SEARCH_DEFAULT = 1000
SEARCH_MAX = 50_000


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _pairs(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(items.items())]


def experiment_json(experiment: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment_id": experiment["experiment_id"],
        "name": experiment["name"],
        "artifact_location": experiment["artifact_location"],
        "lifecycle_stage": experiment["lifecycle_stage"],
        "creation_time": experiment["creation_time"],
        "last_update_time": experiment["last_update_time"],
        "tags": _pairs(experiment["tags"]),
    }


def run_info(run: dict[str, Any]) -> dict[str, Any]:
    info = {
        "run_id": run["run_id"],
        "run_uuid": run["run_id"],
        "run_name": run["run_name"],
        "experiment_id": run["experiment_id"],
        "user_id": run["user_id"],
        "status": run["status"],
        "start_time": run["start_time"],
        "artifact_uri": run["artifact_uri"],
        "lifecycle_stage": run["lifecycle_stage"],
    }
    if run.get("end_time") is not None:
        info["end_time"] = run["end_time"]
    return info


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    metrics = []
    for key, points in sorted(run["metrics"].items()):
        point = latest(points)
        metrics.append({"key": key, **point, "value": _float(point["value"])})
    return {
        "info": run_info(run),
        "data": {"metrics": metrics, "params": _pairs(run["params"]), "tags": _pairs(run["tags"])},
        "inputs": {},
    }


def _run_id(call: Call) -> Any:
    value = call.arg("run_id") or call.arg("run_uuid")
    if not value:
        raise InvalidParameterValue("Missing value for required parameter 'run_id'.")
    return value


def _page(items: list[Any], call: Call) -> tuple[list[Any], str | None]:
    limit = call.int_arg("max_results", SEARCH_DEFAULT) or SEARCH_DEFAULT
    if limit < 1 or limit > SEARCH_MAX:
        raise InvalidParameterValue(f"Invalid value {limit} for parameter 'max_results' supplied: 1..{SEARCH_MAX}")
    try:
        start = int(call.arg("page_token") or 0)
    except ValueError:
        raise InvalidParameterValue("Invalid page token") from None
    token = str(start + limit) if start + limit < len(items) else None
    return items[start : start + limit], token


def _order_by(call: Call) -> list[str]:
    value = call.arg("order_by")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# ---------------------------------------------------------------------- experiments
def create_experiment(call: Call) -> dict[str, Any]:
    b = call.body
    made = call.workspace.tracking.create_experiment(
        call.principal, b.get("name"), b.get("artifact_location"), b.get("tags")
    )
    return {"experiment_id": made["experiment_id"]}


def get_experiment(call: Call) -> dict[str, Any]:
    experiment = call.workspace.tracking.get_experiment(call.principal, require(call.query, "experiment_id"))
    return {"experiment": experiment_json(experiment)}


def get_experiment_by_name(call: Call) -> dict[str, Any]:
    name = call.arg("experiment_name")
    return {"experiment": experiment_json(call.workspace.tracking.get_experiment_by_name(call.principal, name))}


def search_experiments(call: Call) -> dict[str, Any]:
    found = call.workspace.tracking.search_experiments(
        call.principal, call.arg("filter"), _order_by(call), call.arg("view_type")
    )
    page, token = _page(found, call)
    out: dict[str, Any] = {"experiments": [experiment_json(e) for e in page]}
    if token:
        out["next_page_token"] = token
    return out


def delete_experiment(call: Call) -> dict[str, Any]:
    call.workspace.tracking.set_lifecycle(call.principal, require(call.body, "experiment_id"), "deleted")
    return {}


def restore_experiment(call: Call) -> dict[str, Any]:
    call.workspace.tracking.set_lifecycle(call.principal, require(call.body, "experiment_id"), "active")
    return {}


def update_experiment(call: Call) -> dict[str, Any]:
    b = call.body
    call.workspace.tracking.update_experiment(call.principal, require(b, "experiment_id"), b.get("new_name"))
    return {}


def set_experiment_tag(call: Call) -> dict[str, Any]:
    b = call.body
    tracking = call.workspace.tracking
    tracking.set_experiment_tag(call.principal, require(b, "experiment_id"), b.get("key"), b.get("value"), False)
    return {}


def delete_experiment_tag(call: Call) -> dict[str, Any]:
    b = call.body
    call.workspace.tracking.set_experiment_tag(call.principal, require(b, "experiment_id"), b.get("key"), None, True)
    return {}


# ---------------------------------------------------------------------- runs
def create_run(call: Call) -> dict[str, Any]:
    b = call.body
    run = call.workspace.tracking.create_run(
        call.principal,
        require(b, "experiment_id"),
        run_name=b.get("run_name"),
        start_time=b.get("start_time"),
        tags=b.get("tags"),
        user_id=b.get("user_id"),
    )
    return {"run": run_json(run)}


def update_run(call: Call) -> dict[str, Any]:
    b = call.body
    run = call.workspace.tracking.update_run(
        call.principal, _run_id(call), b.get("status"), b.get("end_time"), b.get("run_name")
    )
    return {"run_info": run_info(run)}


def get_run(call: Call) -> dict[str, Any]:
    return {"run": run_json(call.workspace.tracking.get_run(call.principal, _run_id(call)))}


def delete_run(call: Call) -> dict[str, Any]:
    call.workspace.tracking.set_run_lifecycle(call.principal, _run_id(call), "deleted")
    return {}


def restore_run(call: Call) -> dict[str, Any]:
    call.workspace.tracking.set_run_lifecycle(call.principal, _run_id(call), "active")
    return {}


def search_runs(call: Call) -> dict[str, Any]:
    ids = call.arg("experiment_ids") or []
    found = call.workspace.tracking.search_runs(
        call.principal,
        [ids] if isinstance(ids, str) else list(ids),
        call.arg("filter"),
        call.arg("run_view_type"),
        _order_by(call),
    )
    page, token = _page(found, call)
    out: dict[str, Any] = {"runs": [run_json(r) for r in page]}
    if token:
        out["next_page_token"] = token
    return out


def log_metric(call: Call) -> dict[str, Any]:
    b = call.body
    metric = {"key": b.get("key"), "value": b.get("value"), "timestamp": b.get("timestamp"), "step": b.get("step")}
    call.workspace.tracking.log_batch(call.principal, _run_id(call), metrics=[metric])
    return {}


def log_param(call: Call) -> dict[str, Any]:
    b = call.body
    call.workspace.tracking.log_batch(
        call.principal, _run_id(call), params=[{"key": b.get("key"), "value": b.get("value")}]
    )
    return {}


def set_tag(call: Call) -> dict[str, Any]:
    b = call.body
    call.workspace.tracking.log_batch(
        call.principal, _run_id(call), tags=[{"key": b.get("key"), "value": b.get("value")}]
    )
    return {}


def delete_tag(call: Call) -> dict[str, Any]:
    call.workspace.tracking.delete_tag(call.principal, _run_id(call), call.body.get("key"))
    return {}


def log_batch(call: Call) -> dict[str, Any]:
    b = call.body
    call.workspace.tracking.log_batch(call.principal, _run_id(call), b.get("metrics"), b.get("params"), b.get("tags"))
    return {}


def metric_history(call: Call) -> dict[str, Any]:
    points = call.workspace.tracking.metric_history(call.principal, _run_id(call), require(call.query, "metric_key"))
    page, token = _page(points, call)
    out: dict[str, Any] = {"metrics": [{**p, "value": _float(p["value"])} for p in page]}
    if token:
        out["next_page_token"] = token
    return out
