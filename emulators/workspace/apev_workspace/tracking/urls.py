"""Routes of the MLflow tracking API (and its pages, outside /api/, like the run pages)."""

from __future__ import annotations

from starlette.routing import Route

from apev_workspace.core.http import endpoint
from apev_workspace.tracking import pages
from apev_workspace.tracking import responses as r

API = "/api/2.0/mlflow"


def routes() -> list[Route]:
    post = [
        ("experiments/create", r.create_experiment),
        ("experiments/search", r.search_experiments),
        ("experiments/delete", r.delete_experiment),
        ("experiments/restore", r.restore_experiment),
        ("experiments/update", r.update_experiment),
        ("experiments/set-experiment-tag", r.set_experiment_tag),
        ("experiments/delete-experiment-tag", r.delete_experiment_tag),
        ("runs/create", r.create_run),
        ("runs/update", r.update_run),
        ("runs/delete", r.delete_run),
        ("runs/restore", r.restore_run),
        ("runs/search", r.search_runs),
        ("runs/log-metric", r.log_metric),
        ("runs/log-parameter", r.log_param),
        ("runs/set-tag", r.set_tag),
        ("runs/delete-tag", r.delete_tag),
        ("runs/log-batch", r.log_batch),
    ]
    get = [
        ("experiments/get", r.get_experiment),
        ("experiments/get-by-name", r.get_experiment_by_name),
        ("experiments/search", r.search_experiments),  # the 2.0 GET form (query string)
        ("runs/get", r.get_run),
        ("metrics/get-history", r.metric_history),
    ]
    return [
        *(Route(f"{API}/{path}", endpoint(fn), methods=["POST"]) for path, fn in post),
        *(Route(f"{API}/{path}", endpoint(fn), methods=["GET"]) for path, fn in get),
        # /ml/... is the newer UI's path (what mlflow prints as "View run at"); #mlflow/... redirects here
        *(Route(f"/{ui}/experiments/{{experiment_id}}", pages.experiment, methods=["GET"]) for ui in ("mlflow", "ml")),
        *(
            Route(f"/{ui}/experiments/{{experiment_id}}/runs/{{run_id}}", pages.run, methods=["GET"])
            for ui in ("mlflow", "ml")
        ),
    ]
