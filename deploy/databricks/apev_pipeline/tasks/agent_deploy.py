"""agent_deploy: register the agent's model file as a new Unity Catalog model version and smoke-test it
(a Databricks Python file task, run as the agent's principal `agent_<id>`, which owns its registered model).

Registration takes the MLflow Unity Catalog registry path (`POST /api/2.0/mlflow/unity-catalog/model-versions/
create {name, source}`, what `mlflow.register_model` calls with registry URI `databricks-uc`); the version is
READY once the workspace has loaded it. The smoke test imports the registered source and asks it the smoke
question with the agent's configuration: a model that cannot answer fails the run, so serving never rolls to it.
The version's comment records the run, so serving (on `run.finished`) finds the version this run made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

from databricks.sdk import WorkspaceClient


def register(w: WorkspaceClient, model: str, source: str) -> int:
    made = w.api_client.do(
        "POST", "/api/2.0/mlflow/unity-catalog/model-versions/create", body={"name": model, "source": source}
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


def smoke(w: WorkspaceClient, source: str, config: str, query: str) -> dict[str, object]:
    with w.workspace.download(source) as f:
        code = f.read()
    folder = tempfile.mkdtemp(prefix="agent-smoke-")
    path = os.path.join(folder, "model.py")
    with open(path, "wb") as out:
        out.write(code)
    os.environ["APEV_AGENT_CONFIG"] = config
    spec = importlib.util.spec_from_file_location("agent_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["agent_model"] = module
    spec.loader.exec_module(module)
    result = module.predict({"query": query, "context": {"smoke_test": True}})
    if not isinstance(result, dict) or not result.get("answer"):
        raise RuntimeError(f"smoke test: the model answered {result!r} to {query!r}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--smoke-query", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args()
    w = WorkspaceClient()
    version = register(w, args.model_name, args.source)
    w.model_versions.update(args.model_name, version, comment=f"agent-deploy run {args.run_id}")
    print(f"registered {args.model_name} version {version} from {args.source}")
    result = smoke(w, args.source, args.config, args.smoke_query)
    print(f"smoke test passed: {json.dumps(result)[:500]}")


if __name__ == "__main__":
    main()
