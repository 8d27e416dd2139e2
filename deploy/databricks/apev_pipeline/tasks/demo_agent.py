"""The demo agent: a Model Serving model (`predict(inputs) -> dict`) that answers a tenant's questions from its gold
tables, built as agents are on Databricks.

It plans with a chat model reached through a serving endpoint in the OpenAI-compatible chat format (`messages`,
`tools`, `tool_calls`), named in its config: a Foundation Model endpoint on Databricks, the deterministic local chat
endpoint in the local workspace. Its one tool, `sql_query`, runs a *named* query (never SQL written by the model)
over the tables its registration lists, as the agent's own principal, so Unity Catalog grants are a second wall.
Figures in an answer come only from the tool's rows: the model's wording is checked, and if it carries a number
the rows do not, the agent words the rows itself.

Documents: when its config names a `vector_index` (the tenant's index over `gold.knowledge_chunks`, in the
tenant's catalog), the agent also offers the model a `search_documents` tool: a Vector Search query (`query_text`,
the top chunks with their document ids and titles) as the agent's own principal, so the index's Unity Catalog
grants apply; an index outside the agent's catalog is refused before any call. Answers cite the documents used.

Configuration (environment of the served entity, or of the job task):
    DATABRICKS_HOST, DATABRICKS_TOKEN   the workspace and the agent principal's token
    APEV_AGENT_CONFIG                   JSON: {"chat_endpoint", "catalog", "tables": ["gold.monthly_kpis", ...],
                                        "warehouse_id" (optional), "agent_id", "vector_index" (optional)}
Input: {"query": "...", "context": {...}}; `context.mode == "insights"` asks for insights instead of an answer.
"""

from __future__ import annotations

import json
import os
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

TOOL = {
    "type": "function",
    "function": {
        "name": "sql_query",
        "description": "Run one of the agent's named queries over the tenant's gold tables.",
        "parameters": {
            "type": "object",
            "properties": {
                "query_id": {
                    "type": "string",
                    "enum": [
                        "top_locations",
                        "collection_rate",
                        "payroll_summary",
                        "collection_rate_change",
                        "payroll_change",
                    ],
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            "required": ["query_id"],
        },
    },
}
DOC_TOOL = {
    "type": "function",
    "function": {
        "name": "search_documents",
        "description": "Search the tenant's documents (office policies, payer contracts, meeting notes).",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "num_results": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
        },
    },
}
DOC_COLUMNS = ["document_id", "title", "chunk_id", "chunk_text"]
SYSTEM = (
    "You are a dental practice analytics agent. Use the sql_query tool for every figure; "
    "never state a number the tool did not return."
)

# Named queries: (table they read, SQL with {t} for the table's full name). Parameters are bound, never formatted.
QUERIES: dict[str, tuple[str, str]] = {
    "top_locations": (
        "gold.monthly_kpis",
        "SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2)) AS collections, "
        "CAST(sum(production) AS DECIMAL(18,2)) AS production FROM {t} "
        "GROUP BY practice_location ORDER BY collections DESC, practice_location LIMIT :limit",
    ),
    "collection_rate": (
        "gold.monthly_kpis",
        "SELECT practice_location, month, collection_rate FROM {t} "
        "WHERE month = (SELECT max(month) FROM {t}) ORDER BY collection_rate DESC, practice_location",
    ),
    "payroll_summary": (
        "gold.payroll_summary",
        "SELECT practice_location, month, gross_pay, net_pay, active_employees FROM {t} "
        "WHERE month = (SELECT max(month) FROM {t}) ORDER BY gross_pay DESC, practice_location",
    ),
    "collection_rate_change": (
        "gold.monthly_kpis",
        "SELECT practice_location, month, collection_rate, previous_month, previous_rate FROM ("
        "SELECT practice_location, month, collection_rate, "
        "lag(month) OVER (PARTITION BY practice_location ORDER BY month) AS previous_month, "
        "lag(collection_rate) OVER (PARTITION BY practice_location ORDER BY month) AS previous_rate, "
        "row_number() OVER (PARTITION BY practice_location ORDER BY month DESC) AS newest FROM {t}) "
        "WHERE newest = 1 AND previous_rate IS NOT NULL AND collection_rate < previous_rate "
        "ORDER BY practice_location",
    ),
    "payroll_change": (
        "gold.payroll_summary",
        "SELECT practice_location, month, gross_pay, previous_month, previous_gross_pay, largest_run_id FROM ("
        "SELECT practice_location, month, gross_pay, largest_run_id, "
        "lag(month) OVER (PARTITION BY practice_location ORDER BY month) AS previous_month, "
        "lag(gross_pay) OVER (PARTITION BY practice_location ORDER BY month) AS previous_gross_pay, "
        "row_number() OVER (PARTITION BY practice_location ORDER BY month DESC) AS newest FROM {t}) "
        "WHERE newest = 1 AND previous_gross_pay > 0 "
        "AND abs(gross_pay - previous_gross_pay) > 0.25 * previous_gross_pay ORDER BY practice_location",
    ),
}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_client: Any = None


def _config() -> dict[str, Any]:
    return dict(json.loads(os.environ.get("APEV_AGENT_CONFIG") or "{}"))


def _workspace() -> Any:
    global _client
    if _client is None:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        cfg = Config(host=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"], auth_type="pat")
        _client = WorkspaceClient(config=cfg)
    return _client


def chat(endpoint: str, messages: list[dict[str, Any]], documents: bool = False) -> dict[str, Any]:
    """One OpenAI-compatible chat call to the serving endpoint; the assistant's message."""
    tools = [TOOL, DOC_TOOL] if documents else [TOOL]
    body = {"messages": messages, "tools": tools, "max_tokens": 512, "temperature": 0}
    answer = _workspace().api_client.do("POST", f"/serving-endpoints/{endpoint}/invocations", body=body)
    return dict(answer["choices"][0]["message"])


def _warehouse(config: dict[str, Any]) -> str:
    if config.get("warehouse_id"):
        return str(config["warehouse_id"])
    found = list(_workspace().warehouses.list())
    running = [x for x in found if x.state and x.state.value == "RUNNING"]
    return str((running or found)[0].id)


def sql_query(config: dict[str, Any], query_id: str, limit: int = 3) -> dict[str, Any]:
    """The tool: one named query over a table the registration lists (refused otherwise, before it runs)."""
    from databricks.sdk.service.sql import StatementParameterListItem, StatementState

    if query_id not in QUERIES:
        raise ValueError(f"unknown query_id {query_id!r}; known: {sorted(QUERIES)}")
    table, template = QUERIES[query_id]
    if table not in config.get("tables", []):
        raise PermissionError(f"the agent may not read {table}: its registration lists {config.get('tables')}")
    full = f"{config['catalog']}.{table}"
    params = (
        [StatementParameterListItem(name="limit", value=str(int(limit)), type="INT")] if ":limit" in template else []
    )
    w = _workspace()
    done = w.statement_execution.execute_statement(
        statement=template.format(t=full),
        warehouse_id=_warehouse(config),
        parameters=params or None,
        wait_timeout="30s",
    )
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.05)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        error = done.status.error.message if done.status and done.status.error else "no status"
        raise RuntimeError(f"sql_query {query_id} failed: {error}")
    columns = [c.name for c in (done.manifest.schema.columns or [])] if done.manifest and done.manifest.schema else []
    rows = (done.result.data_array or []) if done.result else []
    return {"query_id": query_id, "table": full, "columns": columns, "rows": rows}


def search_documents(config: dict[str, Any], query: str, num_results: int = 3) -> dict[str, Any]:
    """The document tool: the top chunks of the tenant's index for `query`, as the agent's principal."""
    index = str(config.get("vector_index") or "")
    if not index:
        raise PermissionError("the agent has no document index: its registration does not list gold.knowledge_chunks")
    if not index.startswith(f"{config['catalog']}."):
        raise PermissionError(f"the agent may not search {index}: it is outside the catalog {config['catalog']}")
    found = _workspace().vector_search_indexes.query_index(
        index_name=index, columns=DOC_COLUMNS, query_text=query, num_results=max(1, min(int(num_results), 10))
    )
    rows = [list(r) for r in (found.result.data_array or [])] if found.result else []
    return {"query_id": "search_documents", "index": index, "columns": [*DOC_COLUMNS, "score"], "rows": rows}


def documents_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents a search returned, best first, each once (chunks of one document collapse)."""
    seen: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        r = dict(zip(result["columns"], row, strict=False))
        seen.setdefault(str(r["document_id"]), {"document_id": r["document_id"], "title": r["title"]})
    return list(seen.values())


def _numbers(text: str) -> set[str]:
    out = set()
    for n in _NUMBER.findall(text):
        try:
            out.add(str(Decimal(n).normalize()))
        except InvalidOperation:
            continue
    return out


def grounded(text: str, results: list[dict[str, Any]]) -> bool:
    """Every number in `text` is a value (or part of a date) of the tool's rows."""
    allowed: set[str] = set()
    for r in results:
        for row in r["rows"]:
            for value in row:
                allowed |= _numbers(str(value)) if value is not None else set()
        allowed |= {str(i) for i in range(len(r["rows"]) + 1)}  # counts and list positions ("1.", "top 3")
    return _numbers(text) <= allowed


def _own_wording(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        for row in r["rows"]:
            lines.append(", ".join(f"{c}={v}" for c, v in zip(r["columns"], row, strict=False)))
    return "Rows used: " + "; ".join(lines) if lines else "The queries returned no rows."


def _plan_and_run(config: dict[str, Any], question: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    first = chat(config["chat_endpoint"], messages, documents=bool(config.get("vector_index")))
    results = []
    messages.append({"role": "assistant", "content": first.get("content"), "tool_calls": first.get("tool_calls")})
    for call in first.get("tool_calls") or []:
        arguments = json.loads(call["function"].get("arguments") or "{}")
        if call["function"].get("name") == "search_documents":
            result = search_documents(config, str(arguments.get("query") or question), arguments.get("num_results", 3))
        else:
            result = sql_query(config, str(arguments.get("query_id")), int(arguments.get("limit") or 3))
        results.append(result)
        messages.append({"role": "tool", "tool_call_id": call.get("id"), "content": json.dumps(result)})
    return messages if results else [*messages, first], results


def answer(config: dict[str, Any], question: str) -> dict[str, Any]:
    messages, results = _plan_and_run(config, question)
    if not results:
        return {"answer": str(messages[-1].get("content") or ""), "citations": [], "grounded": True}
    texts = []
    for result in results:  # one wording per tool result, each checked against its own rows
        final = chat(config["chat_endpoint"], [*messages[:2], messages[2], _tool_message(messages, result)])
        text = str(final.get("content") or "")
        texts.append(text if grounded(text, [result]) else _own_wording([result]))
    citations = [_citation(r) for r in results]
    return {"answer": " ".join(texts), "citations": citations, "grounded": True}


def _citation(result: dict[str, Any]) -> dict[str, Any]:
    if result["query_id"] == "search_documents":
        keys = ("query_id", "index", "columns", "rows")
        return {k: result[k] for k in keys} | {"documents": documents_of(result)}
    return {k: result[k] for k in ("query_id", "table", "columns", "rows")}


def _tool_message(messages: list[dict[str, Any]], result: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in messages if m.get("role") == "tool" and json.loads(m["content"]) == result)


def insights(config: dict[str, Any]) -> dict[str, Any]:
    """A location whose collection rate fell month over month; a location whose gross payroll moved by more
    than 25 % month over month (its largest payroll run of the month proposed `STATUS: under_review` in ADP,
    flagged for review). Each with a stable key, so re-runs do not duplicate."""
    _, results = _plan_and_run(config, "Find insights: anomalies to flag for review.")
    found = []
    for result in results:
        columns = result["columns"]
        for row in result["rows"]:
            r = dict(zip(columns, row, strict=False))
            loc, month = r["practice_location"], r["month"]
            single = {**result, "rows": [row]}
            reason = chat(config["chat_endpoint"], [{"role": "tool", "content": json.dumps(single)}]).get("content")
            reason = str(reason or "") if grounded(str(reason or ""), [single]) else _own_wording([single])
            if result["query_id"] == "collection_rate_change":
                found.append(
                    {
                        "key": f"collection_rate_fell:{loc}:{month}",
                        "kind": "collection_rate_fell",
                        "target_system": "dentalintel",
                        "entity_type": "locations",
                        "entity_id": loc,
                        "changes": {"collection_rate": r["collection_rate"], "previous_rate": r["previous_rate"]},
                        "reason": reason,
                        "confidence": 0.9,
                        "review_required": False,
                    }
                )
            else:
                found.append(
                    {  # the month's largest payroll run is put under review in ADP (held for approval)
                        "key": f"payroll_change:{loc}:{month}",
                        "kind": "payroll_anomaly",
                        "target_system": "adp",
                        "entity_type": "payroll_runs",
                        "entity_id": r["largest_run_id"],
                        "changes": {"STATUS": "under_review"},
                        "reason": reason,
                        "confidence": 0.6,
                        "review_required": True,
                    }
                )
    return {"insights": found, "citations": results}


def predict(inputs: dict[str, Any]) -> dict[str, Any]:
    config = _config()
    context = inputs.get("context") or {}
    if isinstance(context, dict) and context.get("mode") == "insights":
        return insights(config)
    question = str(inputs.get("query") or "").strip()
    if not question:
        raise ValueError("input.query is required (a question about the tenant's gold data)")
    result = answer(config, question)
    result["agent_version"] = os.environ.get("APEV_AGENT_VERSION", "")
    return result
