"""Routes of the registry: Unity Catalog models and versions, and the MLflow Unity Catalog registry path."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.registry import responses as r

UC = "/api/2.1/unity-catalog/models"
MLFLOW = "/api/2.0/mlflow/unity-catalog"


def routes() -> list[Route]:
    return [
        Route(UC, endpoint(r.create_model), methods=["POST"]),
        Route(UC, endpoint(r.list_models), methods=["GET"]),
        Route(f"{UC}/{{full_name}}", endpoint(r.get_model), methods=["GET"]),
        Route(f"{UC}/{{full_name}}", endpoint(r.update_model), methods=["PATCH"]),
        Route(f"{UC}/{{full_name}}", endpoint(r.delete_model), methods=["DELETE"]),
        Route(f"{UC}/{{full_name}}/aliases/{{alias}}", endpoint(r.set_alias), methods=["PUT"]),
        Route(f"{UC}/{{full_name}}/aliases/{{alias}}", endpoint(r.delete_alias), methods=["DELETE"]),
        Route(f"{UC}/{{full_name}}/aliases/{{alias}}", endpoint(r.get_by_alias), methods=["GET"]),
        Route(f"{UC}/{{full_name}}/versions", endpoint(r.list_versions), methods=["GET"]),
        Route(f"{UC}/{{full_name}}/versions/{{version}}", endpoint(r.get_version), methods=["GET"]),
        Route(f"{UC}/{{full_name}}/versions/{{version}}", endpoint(r.update_version), methods=["PATCH"]),
        Route(f"{UC}/{{full_name}}/versions/{{version}}", endpoint(r.delete_version), methods=["DELETE"]),
        Route(f"{MLFLOW}/registered-models/create", endpoint(r.mlflow_create_model), methods=["POST"]),
        Route(f"{MLFLOW}/registered-models/get", endpoint(r.mlflow_get_model), methods=["GET"]),
        Route(f"{MLFLOW}/model-versions/create", endpoint(r.mlflow_create_version), methods=["POST"]),
        Route(f"{MLFLOW}/model-versions/get", endpoint(r.mlflow_get_version), methods=["GET"]),
        Route(f"{MLFLOW}/model-versions/finalize", endpoint(r.mlflow_finalize_version), methods=["POST"]),
    ]
