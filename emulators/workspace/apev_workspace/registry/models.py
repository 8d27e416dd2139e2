"""Unity Catalog registered models and model versions, without HTTP.

A model version is a Python file exposing `predict(inputs: dict) -> dict` (ARCHITECTURE §8 "Models"). Creating
one copies the source file (a workspace path, or a `/Volumes/...` path once the Files API is there) into the
version's storage location, then loads it in a worker process in the background: the version moves from
PENDING_REGISTRATION to READY, or to FAILED_REGISTRATION with the load error as its status message.

Locking: the registry has its own lock and never calls other areas while holding it, so serving may read
versions under its own lock without any lock-order cycle.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apev_workspace.core.exceptions import ApiError
from apev_workspace.core.store import Store
from apev_workspace.identity.models import Principal
from apev_workspace.registry.exceptions import (
    InvalidParameterValue,
    ModelNotFound,
    PermissionDenied,
    ResourceAlreadyExists,
    VersionNotFound,
)
from apev_workspace.registry.uc import require_schema

if TYPE_CHECKING:
    from apev_workspace.server import Workspace

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")
LOAD_TIMEOUT = 120


def now_ms() -> int:
    return int(time.time() * 1000)


def split_name(full_name: str) -> tuple[str, str, str]:
    parts = (full_name or "").split(".")
    if len(parts) != 3 or not all(_PART.match(p) for p in parts):
        raise InvalidParameterValue(
            f"Invalid registered model name {full_name!r}: expected a three-level name catalog.schema.model"
        )
    return parts[0], parts[1], parts[2]


class Registry:
    def __init__(self, store: Store, workspace: Workspace, root: Path) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._workspace = workspace
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.metastore_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"apev-metastore/{workspace.workspace_id}"))
        self.models: dict[str, dict[str, Any]] = store.load("uc_registered_model")
        self.versions: dict[str, dict[str, Any]] = store.load("uc_model_version")  # key "full_name/version"

    def start(self) -> None:
        """After a restart, versions that were still loading load again."""
        for key, version in list(self.versions.items()):
            if version["status"] == "PENDING_REGISTRATION":
                self._load_async(key)

    # ------------------------------------------------------------------ registered models
    def _model(self, full_name: str) -> dict[str, Any]:
        model = self.models.get(full_name)
        if model is None:
            raise ModelNotFound(f"Registered model '{full_name}' does not exist.")
        return model

    @staticmethod
    def _require_owner(model: dict[str, Any], who: Principal) -> None:
        if not (who.is_admin or model["owner"] in who.acl_names):
            raise PermissionDenied(f"User {who.name} is not the owner of registered model '{model['full_name']}'")

    def create_model(self, full_name: str, who: Principal, comment: str | None = None) -> dict[str, Any]:
        catalog, schema, name = split_name(full_name)
        require_schema(self._workspace, catalog, schema, who)
        with self._lock:
            if full_name in self.models:
                raise ResourceAlreadyExists(f"Registered model '{full_name}' already exists.")
            now = now_ms()
            model_id = str(uuid.uuid4())
            model: dict[str, Any] = {
                "id": model_id,
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema,
                "full_name": full_name,
                "owner": who.name,
                "comment": comment,
                "created_at": now,
                "created_by": who.name,
                "updated_at": now,
                "updated_by": who.name,
                "metastore_id": self.metastore_id,
                "storage_location": (self.root / model_id).as_uri(),
                "aliases": {},
            }
            self.models[full_name] = model
            self._store.put("uc_registered_model", full_name, model)
            return dict(model)

    def get_model(self, full_name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._model(full_name))

    def list_models(self, catalog: str | None, schema: str | None) -> list[dict[str, Any]]:
        if schema and not catalog:
            raise InvalidParameterValue("schema_name requires catalog_name")
        with self._lock:
            return [
                dict(m)
                for m in sorted(self.models.values(), key=lambda m: m["full_name"])
                if (catalog is None or m["catalog_name"] == catalog) and (schema is None or m["schema_name"] == schema)
            ]

    def update_model(self, full_name: str, changes: dict[str, Any], who: Principal) -> dict[str, Any]:
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
            if changes.get("new_name") not in (None, full_name):
                raise InvalidParameterValue("Renaming registered models is not supported by the local workspace")
            for field in ("comment", "owner"):
                if changes.get(field) is not None:
                    model[field] = changes[field]
            model["updated_at"], model["updated_by"] = now_ms(), who.name
            self._store.put("uc_registered_model", full_name, model)
            return dict(model)

    def delete_model(self, full_name: str, who: Principal) -> None:
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
            for key in [k for k in self.versions if k.rsplit("/", 1)[0] == full_name]:
                del self.versions[key]
                self._store.delete("uc_model_version", key)
            del self.models[full_name]
            self._store.delete("uc_registered_model", full_name)
        shutil.rmtree(self.root / model["id"], ignore_errors=True)

    def set_alias(self, full_name: str, alias: str, version: int, who: Principal) -> dict[str, Any]:
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
            self.get_version(full_name, version)
            model["aliases"][alias] = int(version)
            self._store.put("uc_registered_model", full_name, model)
            return {"alias_name": alias, "version_num": int(version)}

    def delete_alias(self, full_name: str, alias: str, who: Principal) -> None:
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
            if model["aliases"].pop(alias, None) is None:
                raise ApiError(
                    f"Alias '{alias}' does not exist on '{full_name}'", error_code="RESOURCE_DOES_NOT_EXIST", status=404
                )
            self._store.put("uc_registered_model", full_name, model)

    def version_by_alias(self, full_name: str, alias: str) -> dict[str, Any]:
        with self._lock:
            number = self._model(full_name)["aliases"].get(alias)
            if number is None:
                raise VersionNotFound(f"Alias '{alias}' does not exist on registered model '{full_name}'.")
            return self.get_version(full_name, number)

    def aliases_of(self, full_name: str, version: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            aliases = self._model(full_name)["aliases"]
            return [
                {"alias_name": a, "version_num": v}
                for a, v in sorted(aliases.items())
                if version is None or v == int(version)
            ]

    # ------------------------------------------------------------------ model versions
    def create_version(
        self, full_name: str, source: str, who: Principal, *, run_id: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        if not source:
            raise InvalidParameterValue("Missing required field: source")
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
        code = read_source(self._workspace, source, who)
        with self._lock:
            number = self._store.next_id(f"model_version/{model['id']}")
            version_id = str(uuid.uuid4())
            location = self.root / model["id"] / "versions" / str(number)
            location.mkdir(parents=True, exist_ok=True)
            (location / "model.py").write_bytes(code)
            now = now_ms()
            version = {
                "id": version_id,
                "model_name": model["name"],
                "catalog_name": model["catalog_name"],
                "schema_name": model["schema_name"],
                "full_name": full_name,
                "version": number,
                "source": source,
                "run_id": run_id,
                "comment": comment,
                "status": "PENDING_REGISTRATION",
                "status_message": "Loading the model file",
                "created_at": now,
                "created_by": who.name,
                "updated_at": now,
                "updated_by": who.name,
                "metastore_id": self.metastore_id,
                "storage_location": location.as_uri(),
            }
            key = f"{full_name}/{number}"
            self.versions[key] = version
            self._store.put("uc_model_version", key, version)
        self._load_async(key)
        return dict(version)

    def model_file(self, version: dict[str, Any]) -> Path:
        model_id = str(self.models[version["full_name"]]["id"])
        return self.root / model_id / "versions" / str(version["version"]) / "model.py"

    def _load_async(self, key: str) -> None:
        threading.Thread(target=self._load, args=(key,), name=f"apev-model-load-{key}", daemon=True).start()

    def _load(self, key: str) -> None:
        """Load the version's file in a fresh process: READY when `predict` is there, else FAILED_REGISTRATION."""
        with self._lock:
            version = self.versions.get(key)
            if version is None or version["full_name"] not in self.models:
                return
            path = self.model_file(version)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "apev_workspace.serving.worker", str(path), "--check"],
                capture_output=True,
                timeout=LOAD_TIMEOUT,
                stdin=subprocess.DEVNULL,
                cwd=path.parent,
            )
            status, message = ("READY", "") if done.returncode == 0 else ("FAILED_REGISTRATION", _failure(done.stdout))
        except (OSError, subprocess.TimeoutExpired) as err:
            status, message = "FAILED_REGISTRATION", f"Could not load the model file: {err}"
        with self._lock:
            version = self.versions.get(key)
            if version is None:
                return
            version.update(status=status, status_message=message, updated_at=now_ms())
            try:
                self._store.put("uc_model_version", key, version)
            except sqlite3.ProgrammingError:
                return  # the workspace closed meanwhile; the version loads again at the next start

    def get_version(self, full_name: str, version: Any) -> dict[str, Any]:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise InvalidParameterValue(f"Invalid model version {version!r}: expected an integer") from None
        with self._lock:
            self._model(full_name)
            found = self.versions.get(f"{full_name}/{number}")
            if found is None:
                raise VersionNotFound(f"Model version {number} of '{full_name}' does not exist.")
            return dict(found)

    def list_versions(self, full_name: str) -> list[dict[str, Any]]:
        with self._lock:
            self._model(full_name)
            found = [v for k, v in self.versions.items() if k.rsplit("/", 1)[0] == full_name]
            return [dict(v) for v in sorted(found, key=lambda v: -v["version"])]

    def update_version(self, full_name: str, version: Any, comment: str | None, who: Principal) -> dict[str, Any]:
        with self._lock:
            self._require_owner(self._model(full_name), who)
            found = self.versions[f"{full_name}/{self.get_version(full_name, version)['version']}"]
            if comment is not None:
                found["comment"] = comment
            found["updated_at"], found["updated_by"] = now_ms(), who.name
            self._store.put("uc_model_version", f"{full_name}/{found['version']}", found)
            return dict(found)

    def delete_version(self, full_name: str, version: Any, who: Principal) -> None:
        with self._lock:
            model = self._model(full_name)
            self._require_owner(model, who)
            number = self.get_version(full_name, version)["version"]
            del self.versions[f"{full_name}/{number}"]
            self._store.delete("uc_model_version", f"{full_name}/{number}")
            model["aliases"] = {a: v for a, v in model["aliases"].items() if v != number}
            self._store.put("uc_registered_model", full_name, model)


def _failure(stdout: bytes) -> str:
    import json

    for line in stdout.decode("utf-8", "replace").splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("event") == "failed":
            return f"Failed to load the model file: {message.get('error')}"
    return "Failed to load the model file (the loader exited without a reason)"


def read_source(workspace: Workspace, source: str, who: Principal) -> bytes:
    """The bytes of a model version's source, read as `who`: a workspace file, or a file on a UC volume."""
    path = source.removeprefix("dbfs:")
    try:
        if path.startswith("/Volumes/"):
            volumes = getattr(workspace, "volume_files", None)
            if volumes is None:
                raise InvalidParameterValue(f"Cannot read source {source}: this workspace has no volumes")
            return bytes(volumes.file(who, path).read_bytes())
        _, code = workspace.files.read(path)
    except ApiError as err:
        raise InvalidParameterValue(f"Cannot read source {source}: {err.message}") from None
    return code
