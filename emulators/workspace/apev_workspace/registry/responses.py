"""Registry endpoints in two wire shapes: Unity Catalog (`/api/2.1/unity-catalog/models`, what the SDK's
`registered_models` and `model_versions` read) and the MLflow Unity Catalog registry
(`/api/2.0/mlflow/unity-catalog/...`, what `mlflow` calls to register a version)."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import InvalidParameterValue, require
from apev_workspace.core.http import Call

PAGE = 100


def _page(items: list[dict[str, Any]], call: Call, key: str) -> dict[str, Any]:
    limit = call.int_arg("max_results", 0) or PAGE
    if limit < 0:
        raise InvalidParameterValue("max_results must be >= 0")
    limit = min(limit, 1000)
    try:
        start = int(call.arg("page_token") or 0)
    except ValueError:
        raise InvalidParameterValue("Invalid page_token") from None
    out: dict[str, Any] = {key: items[start : start + limit]}
    if start + limit < len(items):
        out["next_page_token"] = str(start + limit)
    return out


def _aliases(call: Call, full_name: str, version: int | None = None) -> list[dict[str, Any]]:
    model = call.workspace.registry.get_model(full_name)
    return [
        {**a, "catalog_name": model["catalog_name"], "schema_name": model["schema_name"], "model_name": model["name"]}
        for a in call.workspace.registry.aliases_of(full_name, version)
    ]


def uc_model(call: Call, model: dict[str, Any], with_aliases: bool = True) -> dict[str, Any]:
    out = {k: v for k, v in model.items() if k not in ("id", "aliases") and v is not None}
    if with_aliases:
        out["aliases"] = _aliases(call, model["full_name"])
    return out


def uc_version(call: Call, version: dict[str, Any], with_aliases: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in version.items() if k not in ("full_name", "status_message") and v is not None}
    if with_aliases:
        out["aliases"] = _aliases(call, version["full_name"], version["version"])
    return out


# ---------------------------------------------------------------------- Unity Catalog
def create_model(call: Call) -> dict[str, Any]:
    body = call.body
    full = body.get("full_name") or ".".join(
        [require(body, "catalog_name"), require(body, "schema_name"), require(body, "name")]
    )
    return uc_model(call, call.workspace.registry.create_model(full, call.principal, body.get("comment")))


def get_model(call: Call) -> dict[str, Any]:
    model = call.workspace.registry.get_model(call.path["full_name"])
    return uc_model(call, model, call.bool_arg("include_aliases"))


def list_models(call: Call) -> dict[str, Any]:
    models = call.workspace.registry.list_models(call.arg("catalog_name"), call.arg("schema_name"))
    return _page([uc_model(call, m, False) for m in models], call, "registered_models")


def update_model(call: Call) -> dict[str, Any]:
    model = call.workspace.registry.update_model(call.path["full_name"], call.body, call.principal)
    return uc_model(call, model)


def delete_model(call: Call) -> None:
    call.workspace.registry.delete_model(call.path["full_name"], call.principal)


def set_alias(call: Call) -> dict[str, Any]:
    full = call.path["full_name"]
    alias = call.workspace.registry.set_alias(
        full, call.path["alias"], require(call.body, "version_num"), call.principal
    )
    model = call.workspace.registry.get_model(full)
    return {
        **alias,
        "catalog_name": model["catalog_name"],
        "schema_name": model["schema_name"],
        "model_name": model["name"],
    }


def delete_alias(call: Call) -> None:
    call.workspace.registry.delete_alias(call.path["full_name"], call.path["alias"], call.principal)


def get_by_alias(call: Call) -> dict[str, Any]:
    version = call.workspace.registry.version_by_alias(call.path["full_name"], call.path["alias"])
    return uc_version(call, version, call.bool_arg("include_aliases"))


def get_version(call: Call) -> dict[str, Any]:
    version = call.workspace.registry.get_version(call.path["full_name"], call.path["version"])
    return uc_version(call, version, call.bool_arg("include_aliases"))


def list_versions(call: Call) -> dict[str, Any]:
    versions = call.workspace.registry.list_versions(call.path["full_name"])
    return _page([uc_version(call, v) for v in versions], call, "model_versions")


def update_version(call: Call) -> dict[str, Any]:
    version = call.workspace.registry.update_version(
        call.path["full_name"], call.path["version"], call.body.get("comment"), call.principal
    )
    return uc_version(call, version)


def delete_version(call: Call) -> None:
    call.workspace.registry.delete_version(call.path["full_name"], call.path["version"], call.principal)


# ---------------------------------------------------------------------- MLflow Unity Catalog registry
def _mlflow_model(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": model["full_name"],
        "creation_timestamp": model["created_at"],
        "last_updated_timestamp": model["updated_at"],
        "user_id": model["created_by"],
        "description": model.get("comment") or "",
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model["aliases"].items())],
        "tags": [],
    }


def _mlflow_version(version: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": version["full_name"],
        "version": str(version["version"]),
        "creation_timestamp": version["created_at"],
        "last_updated_timestamp": version["updated_at"],
        "user_id": version["created_by"],
        "description": version.get("comment") or "",
        "source": version["source"],
        "run_id": version.get("run_id") or "",
        "status": version["status"],
        "status_message": version.get("status_message") or "",
        "storage_location": version["storage_location"],
        "aliases": [],
        "tags": [],
    }


def mlflow_create_model(call: Call) -> dict[str, Any]:
    model = call.workspace.registry.create_model(
        require(call.body, "name"), call.principal, call.body.get("description")
    )
    return {"registered_model": _mlflow_model(model)}


def mlflow_get_model(call: Call) -> dict[str, Any]:
    return {"registered_model": _mlflow_model(call.workspace.registry.get_model(require(call.query, "name")))}


def mlflow_create_version(call: Call) -> dict[str, Any]:
    version = call.workspace.registry.create_version(
        require(call.body, "name"),
        require(call.body, "source"),
        call.principal,
        run_id=call.body.get("run_id"),
        comment=call.body.get("description"),
    )
    return {"model_version": _mlflow_version(version)}


def mlflow_get_version(call: Call) -> dict[str, Any]:
    version = call.workspace.registry.get_version(require(call.query, "name"), require(call.query, "version"))
    return {"model_version": _mlflow_version(version)}


def mlflow_finalize_version(call: Call) -> dict[str, Any]:
    """MLflow finalizes after uploading artifacts; here the version loads by itself, so this only reads it."""
    version = call.workspace.registry.get_version(require(call.body, "name"), require(call.body, "version"))
    return {"model_version": _mlflow_version(version)}
