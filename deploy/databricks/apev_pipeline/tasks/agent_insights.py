"""agent_insights: run the agent over gold and append what it finds to `<catalog>.gold.agent_insights`
(a Databricks Python file task, run as the agent's principal, on the agent's schedule).

The agent is the version its endpoint serves: the registered model's alias `serving`, which the serving service
moves when it rolls a version out (a version whose smoke test failed its threshold never gets it); a model
without the alias (rolled before the alias existed) uses its newest READY version. It is asked in insights mode. Each
insight has a stable id (UUIDv5 of agent id and the insight's key, e.g. `collection_rate_fell:<location>:<month>`),
and a row is inserted only when its id is absent, so a re-run or a repair appends nothing twice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import uuid

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import StatementParameterListItem, StatementState

NAMESPACE = uuid.UUID("1d9ec73f-ae22-4b20-909b-765db7744d68")  # apev_contracts.ids.PROJECT_NAMESPACE

INSERT = (
    "INSERT INTO {t} (insight_id, agent_id, run_id, kind, target_system, entity_type, entity_id, changes, reason, "
    "confidence, review_required, created_at) SELECT :insight_id, :agent_id, :run_id, :kind, :target_system, "
    ":entity_type, :entity_id, :changes, :reason, CAST(:confidence AS DOUBLE), CAST(:review AS BOOLEAN), "
    "current_timestamp() WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE insight_id = :insight_id)"
)


def insight_id(agent_id: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, json.dumps(["agent_insight", agent_id, key])))


SERVING_ALIAS = "serving"  # apev_pipeline.agents.SERVING_ALIAS (task files import nothing of the project)


def newest_source(w: WorkspaceClient, model: str) -> str:
    from databricks.sdk.errors import NotFound

    try:
        return str(w.model_versions.get_by_alias(model, SERVING_ALIAS).source)
    except NotFound:
        pass
    versions = [v for v in w.model_versions.list(model) if v.status and v.status.value == "READY"]
    if not versions:
        raise RuntimeError(f"{model} has no READY version: deploy the agent first")
    return str(max(versions, key=lambda v: int(v.version or 0)).source)


def load(w: WorkspaceClient, source: str) -> object:
    with w.workspace.download(source) as f:
        code = f.read()
    # the file only has to exist while the module is compiled; the folder goes with it (it used to stay in /tmp)
    with tempfile.TemporaryDirectory(prefix="agent-insights-") as folder:
        path = os.path.join(folder, "model.py")
        with open(path, "wb") as out:
            out.write(code)
        spec = importlib.util.spec_from_file_location("agent_model", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["agent_model"] = module
        spec.loader.exec_module(module)
    return module


def execute(w: WorkspaceClient, warehouse: str, statement: str, params: dict[str, str]) -> None:
    items = [StatementParameterListItem(name=k, value=v) for k, v in params.items()]
    done = w.statement_execution.execute_statement(
        statement=statement, warehouse_id=warehouse, parameters=items, wait_timeout="30s"
    )
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.1)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        error = done.status.error.message if done.status and done.status.error else "no status"
        raise RuntimeError(f"insert failed: {error}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args()
    config = json.loads(args.config)
    os.environ["APEV_AGENT_CONFIG"] = args.config
    w = WorkspaceClient()
    module = load(w, newest_source(w, args.model_name))
    found = module.predict({"query": "insights", "context": {"mode": "insights"}})["insights"]  # type: ignore[attr-defined]
    warehouse = config.get("warehouse_id") or str(next(iter(w.warehouses.list())).id)
    table = f"{config['catalog']}.gold.agent_insights"
    for item in found:
        execute(
            w,
            warehouse,
            INSERT.format(t=table),
            {
                "insight_id": insight_id(args.agent_id, item["key"]),
                "agent_id": args.agent_id,
                "run_id": args.run_id,
                "kind": item["kind"],
                "target_system": item["target_system"],
                "entity_type": item["entity_type"],
                "entity_id": item["entity_id"],
                "changes": json.dumps(item["changes"], sort_keys=True),
                "reason": item["reason"],
                "confidence": str(item["confidence"]),
                "review": "true" if item["review_required"] else "false",
            },
        )
        print(f"insight {item['key']}: {item['reason']}")
    print(f"agent_insights: {len(found)} insights considered for {table}")


if __name__ == "__main__":
    main()
