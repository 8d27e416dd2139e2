"""Serving endpoints and invocations in Databricks' wire shape.

Invocation inputs and what `predict(inputs: dict) -> dict` receives:
- `dataframe_records` (a list of row objects), `dataframe_split` (`columns` + `data`), `instances` (a list of
  rows; a row that is not an object is passed as `{"input": row}`), and `inputs` given column-wise
  (`{"col": [v1, v2]}`) or as a list: `predict` runs once per row, the answer is `{"predictions": [...]}`.
- `inputs` as any other object: `predict` runs once on it, the answer is `{"predictions": <its result>}`.
- embeddings `input` (a string or a list of strings, the OpenAI-compatible embeddings request): `predict` runs
  once on `{"input": [...]}` and its result is the answer as given (`{"object": "list", "data": [...]}`).
- chat `messages` (with `max_tokens`, `temperature`, `n`, `stop`, `extra_params` when given): `predict` runs once on
  the whole body; its result becomes a chat completion (its `content`, else `choices` as given, else its JSON).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse

from apev_workspace.core.exceptions import require
from apev_workspace.core.http import Call
from apev_workspace.serving.exceptions import BadRequest

INPUT_FIELDS = ("dataframe_records", "dataframe_split", "instances", "inputs", "messages", "input")
CHAT_FIELDS = ("max_tokens", "temperature", "n", "stop", "extra_params", "stream", "tools", "tool_choice")
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def _entity(entity: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if v is not None}


def _config(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    out = {k: v for k, v in config.items() if k != "served_entities"}
    out["served_entities"] = [_entity(e) for e in config["served_entities"]]
    return out


def detailed(endpoint: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: endpoint[k]
        for k in ("name", "id", "creator", "creation_timestamp", "last_updated_timestamp", "state", "route_optimized")
    }
    out["permission_level"] = "CAN_MANAGE"
    if endpoint.get("description"):
        out["description"] = endpoint["description"]
    if endpoint.get("tags"):
        out["tags"] = endpoint["tags"]
    for key in ("config", "pending_config"):
        shaped = _config(endpoint.get(key))
        if shaped:
            out[key] = shaped
    return out


def summary(endpoint: dict[str, Any]) -> dict[str, Any]:
    out = {k: endpoint[k] for k in ("name", "id", "creator", "creation_timestamp", "last_updated_timestamp", "state")}
    if endpoint.get("tags"):
        out["tags"] = endpoint["tags"]
    config = endpoint.get("config") or endpoint.get("pending_config")
    if config:
        out["config"] = {
            "served_entities": [
                {k: e[k] for k in ("name", "entity_name", "entity_version")} for e in config["served_entities"]
            ]
        }
    return out


def create(call: Call) -> dict[str, Any]:
    return detailed(call.workspace.serving.create(call.body, call.principal))


def get(call: Call) -> dict[str, Any]:
    return detailed(call.workspace.serving.get(call.path["name"]))


def list_endpoints(call: Call) -> dict[str, Any]:
    return {"endpoints": [summary(e) for e in call.workspace.serving.list_endpoints()]}


def delete(call: Call) -> None:
    call.workspace.serving.delete(call.path["name"], call.principal)


def update_config(call: Call) -> dict[str, Any]:
    return detailed(call.workspace.serving.update_config(call.path["name"], call.body, call.principal))


def patch_tags(call: Call) -> dict[str, Any]:
    tags = call.workspace.serving.patch_tags(
        call.path["name"], call.body.get("add_tags") or [], call.body.get("delete_tags") or [], call.principal
    )
    return {"tags": tags}


def logs(call: Call) -> dict[str, Any]:
    return {"logs": call.workspace.serving.logs(call.path["name"], call.path["served_model_name"])}


def build_logs(call: Call) -> dict[str, Any]:
    call.workspace.serving.get(call.path["name"])
    return {"logs": "Local workspace: models load from their file; there is no container build."}


def metrics(call: Call) -> PlainTextResponse:
    """Prometheus text of invoke latency per served entity (buckets as ARCHITECTURE §8 "Latency samples")."""
    samples = call.workspace.serving.latencies(call.path["name"])
    lines = ["# TYPE request_latency_ms histogram"]
    for entity in sorted({s[2] for s in samples}):
        values = [s[1] for s in samples if s[2] == entity]
        label = f'served_entity_name="{entity}"'
        for bound in LATENCY_BUCKETS_MS:
            lines.append(f'request_latency_ms_bucket{{{label},le="{bound}"}} {sum(v <= bound for v in values)}')
        lines.append(f'request_latency_ms_bucket{{{label},le="+Inf"}} {len(values)}')
        lines.append(f"request_latency_ms_sum{{{label}}} {sum(values):.3f}")
        lines.append(f"request_latency_ms_count{{{label}}} {len(values)}")
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


# ---------------------------------------------------------------------- invocations
def parse_input(body: dict[str, Any]) -> tuple[str, Any]:
    """(kind, payload) for the worker: `rows` (predict per row), `one` or `chat` (predict once)."""
    given = [f for f in INPUT_FIELDS if body.get(f) is not None]
    if len(given) != 1:
        raise BadRequest(
            "Invalid input: give exactly one of dataframe_records, dataframe_split, instances, inputs, messages"
            " or input" + (f" (got {', '.join(given)})" if given else "")
        )
    field, value = given[0], body[given[0]]
    if field == "input":
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("input must be a string or a list of strings (an embeddings request)")
        return "embeddings", {"input": texts}
    if field == "messages":
        if not isinstance(value, list):
            raise BadRequest("messages must be a list of {role, content} objects")
        return "chat", {"messages": value, **{k: body[k] for k in CHAT_FIELDS if body.get(k) is not None}}
    if field == "dataframe_split":
        columns, data = value.get("columns") or [], value.get("data") or []
        if not isinstance(data, list) or any(not isinstance(row, list) or len(row) != len(columns) for row in data):
            raise BadRequest("dataframe_split needs columns and data rows of the same length")
        return "rows", [dict(zip(columns, row, strict=True)) for row in data]
    if field == "inputs" and isinstance(value, dict):
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        if value and len(lengths) == 1 and all(isinstance(v, list) for v in value.values()):
            return "rows", [dict(zip(value, row, strict=True)) for row in zip(*value.values(), strict=True)]
        return "one", value
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be a list of rows")
    return "rows", [row if isinstance(row, dict) else {"input": row} for row in value]


def _words(text: Any) -> int:
    return len(str(text or "").split())


def chat_response(entity: str, body: dict[str, Any], result: Any) -> dict[str, Any]:
    prompt_tokens = sum(_words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
    if isinstance(result, dict) and isinstance(result.get("choices"), list):
        choices = result["choices"]
    else:
        content = result.get("content") if isinstance(result, dict) and isinstance(result.get("content"), str) else None
        message = {"role": "assistant", "content": content if content is not None else json.dumps(result)}
        choices = [{"index": 0, "message": message, "finish_reason": "stop"}]
    completion = sum(_words((c.get("message") or {}).get("content")) for c in choices if isinstance(c, dict))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": entity,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }


def invoke(call: Call) -> JSONResponse:
    kind, payload = parse_input(call.body)
    name = require(call.path, "name")
    entity, result = call.workspace.serving.invoke(name, kind, payload)
    if kind == "chat":
        body = chat_response(entity, payload, result)
    elif kind == "embeddings":
        body = result if isinstance(result, dict) else {"predictions": result}
    else:
        body = {"predictions": result}
    return JSONResponse(body, headers={"served-model-name": entity})
