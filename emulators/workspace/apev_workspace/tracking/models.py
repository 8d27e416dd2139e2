"""MLflow tracking without HTTP: experiments and runs as Databricks keeps them, durable in the store.

Experiments are named by absolute workspace paths (`/Users/<me>/...`, `/Shared/...`) whose parent folder must
exist in the workspace tree, and get ids from the workspace-object sequence (as on Databricks, where an
experiment is a workspace object). Access is the experiment's ACL (`/api/2.0/permissions/experiments/<id>`):
the creator owns it, admins manage all, CAN_READ reads runs, CAN_EDIT creates and logs runs, CAN_MANAGE deletes,
renames and grants. Each run keeps every metric value logged (`metrics/get-history`); its `data.metrics` are
the latest per key (highest step, then timestamp, then value, as MLflow orders them). Params are immutable.

Locking: the workspace's lock (the ACL checks take it too, so one lock means no lock-order cycle).
"""

from __future__ import annotations

import copy
import math
import posixpath
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Principal
from apev_workspace.permissions.models import ObjectType, Permissions
from apev_workspace.tracking import search
from apev_workspace.tracking.exceptions import (
    ExperimentNotFound,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    RunNotFound,
)

if TYPE_CHECKING:
    from apev_workspace.workspace_files.models import WorkspaceFiles

LEVELS = ("CAN_READ", "CAN_EDIT", "CAN_MANAGE", "IS_OWNER")
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
BATCH_LIMITS = {"metrics": 1000, "params": 100, "tags": 100}
BATCH_TOTAL = 1000
RUN_NAME_TAG = "mlflow.runName"
_WORDS = (
    ("amber", "brave", "calm", "deft", "eager", "fair", "gentle", "keen", "lucid", "merry", "noble", "quick"),
    ("bass", "crane", "finch", "heron", "lynx", "moth", "otter", "panda", "quail", "robin", "stoat", "wren"),
)


def now_ms() -> int:
    return int(time.time() * 1000)


def _key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidParameterValue(f"Missing value for required parameter 'key' of a {what}")
    if len(key) > MAX_KEY:
        raise InvalidParameterValue(f"{what.capitalize()} key '{key[:40]}...' has length {len(key)}, limit {MAX_KEY}")
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidParameterValue(f"Invalid {what} name: '{key}'. Names may be treated as files in certain cases")
    return key


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidParameterValue(f"Got invalid value {value!r} for {what}: expected a number")
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"Got invalid value {value!r} for {what}: expected a number") from None


def _int(value: Any, what: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"Got invalid value {value!r} for {what}: expected an integer") from None


class Tracking:
    def __init__(self, store: Store, lock: threading.RLock, files: WorkspaceFiles, permissions: Permissions) -> None:
        self._store = store
        self._files = files
        self._permissions = permissions
        self._lock = lock
        self.experiments: dict[str, dict[str, Any]] = store.load("mlflow_experiment")
        self.runs: dict[str, dict[str, Any]] = store.load("mlflow_run")
        permissions.register("experiments", ObjectType(LEVELS, "/experiments/", self._owner_of))

    def _owner_of(self, experiment_id: str) -> str | None:
        found = self.experiments.get(str(experiment_id))
        return None if found is None else str(found["owner"])

    # ------------------------------------------------------------------ access
    def _experiment(self, experiment_id: Any) -> dict[str, Any]:
        found = self.experiments.get(str(experiment_id or ""))
        if found is None:
            raise ExperimentNotFound(f"No Experiment with id={experiment_id} exists")
        return found

    def _require(self, who: Principal, experiment: dict[str, Any], level: str, doing: str) -> None:
        if not self._permissions.has(who, "experiments", experiment["experiment_id"], level):
            raise PermissionDenied(
                f"User {who.name} does not have permission '{level}' on experiment {experiment['experiment_id']}"
                f" ({doing})"
            )

    def can_read(self, who: Principal, experiment: dict[str, Any]) -> bool:
        return self._permissions.has(who, "experiments", experiment["experiment_id"], "CAN_READ")

    def _run(self, run_id: Any) -> dict[str, Any]:
        found = self.runs.get(str(run_id or ""))
        if found is None:
            raise RunNotFound(f"Run '{run_id}' not found")
        return found

    def _writable_run(self, who: Principal, run_id: Any) -> dict[str, Any]:
        run = self._run(run_id)
        self._require(who, self._experiment(run["experiment_id"]), "CAN_EDIT", "logging to a run")
        if run["lifecycle_stage"] != "active":
            raise InvalidParameterValue(
                f"The run {run['run_id']} must be in the 'active' state. Current state is {run['lifecycle_stage']}."
            )
        return run

    # ------------------------------------------------------------------ experiments
    def create_experiment(
        self, who: Principal, name: Any, artifact_location: str | None = None, tags: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterValue("Missing value for required parameter 'name'.")
        if not name.startswith("/"):
            raise InvalidParameterValue(
                f"Got an invalid experiment name '{name}'. An experiment name must be an absolute path within the"
                " Databricks workspace, e.g. '/Users/<some-username>/my-experiment'."
            )
        path = posixpath.normpath(name.removeprefix("/Workspace") or "/")
        parent = posixpath.dirname(path)
        try:
            folder = self._files.get(parent)
        except ResourceDoesNotExist:
            raise ResourceDoesNotExist(f"Parent directory {parent} does not exist.") from None
        if folder["object_type"] != "DIRECTORY":
            raise InvalidParameterValue(f"Parent path {parent} is not a directory.")
        try:
            self._files.get(path)
            raise ResourceAlreadyExists(f"Node named '{posixpath.basename(path)}' already exists")
        except ResourceDoesNotExist:
            pass
        with self._lock:
            if any(e["name"] == path for e in self.experiments.values()):
                raise ResourceAlreadyExists(f"Node named '{posixpath.basename(path)}' already exists")
            experiment_id = str(self._store.next_id("ws_object_id"))
            now = now_ms()
            experiment: dict[str, Any] = {
                "experiment_id": experiment_id,
                "name": path,
                "artifact_location": artifact_location or f"dbfs:/databricks/mlflow-tracking/{experiment_id}",
                "lifecycle_stage": "active",
                "creation_time": now,
                "last_update_time": now,
                "owner": who.name,
                "tags": {_key(t.get("key"), "tag"): _limited(t.get("value"), MAX_TAG_VALUE, "tag") for t in tags or []},
            }
            self._save_experiment(experiment)
            return copy.deepcopy(experiment)

    def _save_experiment(self, experiment: dict[str, Any]) -> None:
        self.experiments[experiment["experiment_id"]] = experiment
        self._store.put("mlflow_experiment", experiment["experiment_id"], experiment)

    def get_experiment(self, who: Principal, experiment_id: Any) -> dict[str, Any]:
        with self._lock:
            experiment = self._experiment(experiment_id)
            self._require(who, experiment, "CAN_READ", "reading the experiment")
            return copy.deepcopy(experiment)

    def get_experiment_by_name(self, who: Principal, name: Any) -> dict[str, Any]:
        if not isinstance(name, str) or not name:
            raise InvalidParameterValue("Missing value for required parameter 'experiment_name'.")
        path = posixpath.normpath(name.removeprefix("/Workspace") or "/")
        with self._lock:
            found = [e for e in self.experiments.values() if e["name"] == path]
            if not found:
                raise ResourceDoesNotExist(f"Node {name} does not exist.")
            return self.get_experiment(who, found[0]["experiment_id"])

    def search_experiments(
        self, who: Principal, filter_string: str | None, order_by: list[str] | None, view_type: str | None
    ) -> list[dict[str, Any]]:
        clauses = search.parse_filter(filter_string)
        for c in clauses:
            if c.kind not in ("attributes", "tags") or (c.kind == "attributes" and c.key not in _EXPERIMENT_ATTRS):
                raise InvalidParameterValue(f"Invalid attribute key '{c.key}' for experiments: use name or tags.<key>")
        order = search.parse_order(order_by) or [("attributes", "last_update_time", True)]
        stages = _stages(view_type)
        with self._lock:
            found = [
                copy.deepcopy(e)
                for e in self.experiments.values()
                if e["lifecycle_stage"] in stages and self.can_read(who, e)
            ]
        found = [e for e in found if search.matches(e, clauses, _experiment_value)]
        found = search.sort(found, [("attributes", "experiment_id", False)], _experiment_value)
        return search.sort(found, order, _experiment_value)

    def update_experiment(self, who: Principal, experiment_id: Any, new_name: Any) -> None:
        with self._lock:
            experiment = self._experiment(experiment_id)
            self._require(who, experiment, "CAN_MANAGE", "renaming the experiment")
            if not isinstance(new_name, str) or not new_name.startswith("/"):
                raise InvalidParameterValue(f"Got an invalid experiment name '{new_name}'")
            if any(e["name"] == new_name for e in self.experiments.values() if e is not experiment):
                raise ResourceAlreadyExists(f"Node named '{posixpath.basename(new_name)}' already exists")
            experiment.update(name=new_name, last_update_time=now_ms())
            self._save_experiment(experiment)

    def set_lifecycle(self, who: Principal, experiment_id: Any, stage: str) -> None:
        with self._lock:
            experiment = self._experiment(experiment_id)
            self._require(who, experiment, "CAN_MANAGE", "deleting or restoring the experiment")
            experiment.update(lifecycle_stage=stage, last_update_time=now_ms())
            self._save_experiment(experiment)
            for run in self.runs.values():
                if run["experiment_id"] == experiment["experiment_id"]:
                    run["lifecycle_stage"] = stage
                    self._store.put("mlflow_run", run["run_id"], run)

    def set_experiment_tag(self, who: Principal, experiment_id: Any, key: Any, value: Any, delete: bool) -> None:
        with self._lock:
            experiment = self._experiment(experiment_id)
            self._require(who, experiment, "CAN_EDIT", "tagging the experiment")
            if delete:
                experiment["tags"].pop(_key(key, "tag"), None)
            else:
                experiment["tags"][_key(key, "tag")] = _limited(value, MAX_TAG_VALUE, "tag")
            experiment["last_update_time"] = now_ms()
            self._save_experiment(experiment)

    # ------------------------------------------------------------------ runs
    def create_run(
        self,
        who: Principal,
        experiment_id: Any,
        *,
        run_name: str | None = None,
        start_time: Any = None,
        tags: list[dict[str, Any]] | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            experiment = self._experiment(experiment_id)
            self._require(who, experiment, "CAN_EDIT", "creating a run")
            if experiment["lifecycle_stage"] != "active":
                raise InvalidParameterValue(
                    f"The experiment {experiment['experiment_id']} must be in the 'active' state"
                )
            run_id = uuid.uuid4().hex
            given = {_key(t.get("key"), "tag"): _limited(t.get("value"), MAX_TAG_VALUE, "tag") for t in tags or []}
            name = run_name or given.get(RUN_NAME_TAG) or _run_name(run_id)
            given[RUN_NAME_TAG] = name
            run = {
                "run_id": run_id,
                "experiment_id": experiment["experiment_id"],
                "run_name": name,
                "user_id": user_id or who.name,
                "status": "RUNNING",
                "start_time": _int(start_time, "start_time", now_ms()),
                "end_time": None,
                "artifact_uri": f"{experiment['artifact_location']}/{run_id}/artifacts",
                "lifecycle_stage": "active",
                "params": {},
                "tags": given,
                "metrics": {},  # key -> [{value, timestamp, step}, ...] in logging order
            }
            self._save_run(run)
            return copy.deepcopy(run)

    def _save_run(self, run: dict[str, Any]) -> None:
        self.runs[run["run_id"]] = run
        self._store.put("mlflow_run", run["run_id"], run)

    def get_run(self, who: Principal, run_id: Any) -> dict[str, Any]:
        with self._lock:
            run = self._run(run_id)
            self._require(who, self._experiment(run["experiment_id"]), "CAN_READ", "reading a run")
            return copy.deepcopy(run)

    def update_run(
        self, who: Principal, run_id: Any, status: Any, end_time: Any, run_name: Any = None
    ) -> dict[str, Any]:
        with self._lock:
            run = self._writable_run(who, run_id)
            if status is not None:
                if status not in RUN_STATUSES:
                    raise InvalidParameterValue(f"Invalid run status {status!r}: expected one of {RUN_STATUSES}")
                run["status"] = status
            if end_time is not None:
                run["end_time"] = _int(end_time, "end_time", now_ms())
            if run_name:
                run["run_name"] = run["tags"][RUN_NAME_TAG] = str(run_name)
            self._save_run(run)
            return copy.deepcopy(run)

    def set_run_lifecycle(self, who: Principal, run_id: Any, stage: str) -> None:
        with self._lock:
            run = self._run(run_id)
            self._require(who, self._experiment(run["experiment_id"]), "CAN_EDIT", "deleting or restoring a run")
            run["lifecycle_stage"] = stage
            self._save_run(run)

    def log_batch(
        self,
        who: Principal,
        run_id: Any,
        metrics: list[dict[str, Any]] | None = None,
        params: list[dict[str, Any]] | None = None,
        tags: list[dict[str, Any]] | None = None,
    ) -> None:
        """All or nothing: every item is validated before any is applied (as MLflow's log-batch)."""
        given = {"metrics": metrics or [], "params": params or [], "tags": tags or []}
        for what, items in given.items():
            if not isinstance(items, list):
                raise InvalidParameterValue(f"{what} must be a list")
            if len(items) > BATCH_LIMITS[what]:
                raise InvalidParameterValue(
                    f"A batch logging request can contain at most {BATCH_LIMITS[what]} {what}. Got {len(items)}"
                )
        if sum(len(v) for v in given.values()) > BATCH_TOTAL:
            raise InvalidParameterValue(f"A batch logging request can contain at most {BATCH_TOTAL} items in total")
        points = []
        for m in given["metrics"]:
            key = _key(m.get("key"), "metric")
            points.append(
                (
                    key,
                    {
                        "value": _number(m.get("value"), f"metric '{key}'"),
                        "timestamp": _int(m.get("timestamp"), "timestamp", now_ms()),
                        "step": _int(m.get("step"), "step", 0),
                    },
                )
            )
        new_params: dict[str, str] = {}
        for p in given["params"]:
            key = _key(p.get("key"), "param")
            value = _limited(p.get("value"), MAX_PARAM_VALUE, "param")
            if new_params.get(key, value) != value:
                raise InvalidParameterValue(f"Duplicate parameter keys with different values: '{key}'")
            new_params[key] = value
        new_tags = {_key(t.get("key"), "tag"): _limited(t.get("value"), MAX_TAG_VALUE, "tag") for t in given["tags"]}
        with self._lock:
            run = self._writable_run(who, run_id)
            for key, value in new_params.items():
                old = run["params"].get(key)
                if old is not None and old != value:
                    raise InvalidParameterValue(
                        f"Changing param values is not allowed. Param with key='{key}' was already logged with"
                        f" value='{old}' for run ID='{run['run_id']}'. Attempted logging new value '{value}'."
                    )
            run["params"].update(new_params)
            run["tags"].update(new_tags)
            if RUN_NAME_TAG in new_tags:
                run["run_name"] = new_tags[RUN_NAME_TAG]
            for key, point in points:
                run["metrics"].setdefault(key, []).append(point)
            self._save_run(run)

    def delete_tag(self, who: Principal, run_id: Any, key: Any) -> None:
        with self._lock:
            run = self._writable_run(who, run_id)
            if run["tags"].pop(_key(key, "tag"), None) is None:
                raise InvalidParameterValue(f"No tag with name: {key} in run with id {run['run_id']}")
            self._save_run(run)

    def metric_history(self, who: Principal, run_id: Any, key: Any) -> list[dict[str, Any]]:
        run = self.get_run(who, run_id)
        return [{"key": key, **p} for p in run["metrics"].get(str(key), [])]

    def search_runs(
        self,
        who: Principal,
        experiment_ids: list[Any],
        filter_string: str | None,
        view_type: str | None,
        order_by: list[str] | None,
    ) -> list[dict[str, Any]]:
        if not experiment_ids:
            raise InvalidParameterValue("Missing value for required parameter 'experiment_ids'.")
        clauses = search.parse_filter(filter_string)
        order = [*search.parse_order(order_by), ("attributes", "start_time", True), ("attributes", "run_id", False)]
        stages = _stages(view_type)
        with self._lock:
            wanted = set()
            for experiment_id in experiment_ids:
                experiment = self.experiments.get(str(experiment_id))
                if experiment is None:
                    continue
                self._require(who, experiment, "CAN_READ", "searching runs")
                wanted.add(experiment["experiment_id"])
            found = [
                copy.deepcopy(r)
                for r in self.runs.values()
                if r["experiment_id"] in wanted and r["lifecycle_stage"] in stages
            ]
        found = [r for r in found if search.matches(r, clauses, run_value)]
        return search.sort(found, order, run_value)


_EXPERIMENT_ATTRS = ("name", "experiment_id", "creation_time", "last_update_time")
_RUN_ATTRS = {
    "run_id": "run_id",
    "run_uuid": "run_id",
    "run_name": "run_name",
    "status": "status",
    "start_time": "start_time",
    "end_time": "end_time",
    "user_id": "user_id",
    "artifact_uri": "artifact_uri",
    "experiment_id": "experiment_id",
    "lifecycle_stage": "lifecycle_stage",
    "created": "start_time",
    "Created": "start_time",
}


def latest(points: list[dict[str, Any]]) -> dict[str, Any]:
    def rank(p: dict[str, Any]) -> tuple[int, int, float]:
        value = p["value"]
        return (p["step"], p["timestamp"], -math.inf if math.isnan(value) else value)

    return max(points, key=rank)


def run_value(run: dict[str, Any], kind: str, key: str) -> Any:
    if kind == "metrics":
        points = run["metrics"].get(key)
        return latest(points)["value"] if points else None
    if kind in ("params", "tags"):
        return run[kind].get(key)
    field = _RUN_ATTRS.get(key)
    if field is None:
        raise InvalidParameterValue(f"Invalid attribute key '{key}' specified. Valid keys are {sorted(_RUN_ATTRS)}")
    return run.get(field)


def _experiment_value(experiment: dict[str, Any], kind: str, key: str) -> Any:
    if kind == "tags":
        return experiment["tags"].get(key)
    if key not in _EXPERIMENT_ATTRS:
        raise InvalidParameterValue(f"Invalid order_by key '{key}' for experiments")
    return int(experiment[key]) if key == "experiment_id" else experiment[key]


def _stages(view_type: str | None) -> tuple[str, ...]:
    view = (view_type or "ACTIVE_ONLY").upper()
    if view not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"):
        raise InvalidParameterValue(f"Invalid view_type {view_type!r}: expected ACTIVE_ONLY, DELETED_ONLY or ALL")
    return {"ACTIVE_ONLY": ("active",), "DELETED_ONLY": ("deleted",), "ALL": ("active", "deleted")}[view]


def _limited(value: Any, limit: int, what: str) -> str:
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise InvalidParameterValue(f"{what.capitalize()} value '{text[:40]}...' had length {len(text)}, limit {limit}")
    return text


def _run_name(run_id: str) -> str:
    n = int(run_id[:8], 16)
    return f"{_WORDS[0][n % 12]}-{_WORDS[1][(n // 12) % 12]}-{n % 1000}"
