"""The local-only chat endpoint: intent routing to tool calls, templated wording copied from the tool's rows."""

from __future__ import annotations

import json

from apev_workspace.serving import local_chat
from apev_workspace.serving.chat import ensure_local_chat_endpoint
from apev_workspace.testing import RunningWorkspace

TOOLS = [{"type": "function", "function": {"name": "sql_query", "parameters": {}}}]


def _ask(text: str, tools: list[dict[str, object]] | None = TOOLS) -> dict[str, object]:
    return local_chat.predict({"messages": [{"role": "user", "content": text}], "tools": tools})


def test_intents_route_to_named_queries() -> None:
    cases = {
        "What are our top 5 performing locations?": {"query_id": "top_locations", "limit": 5},
        "Which are the best locations?": {"query_id": "top_locations", "limit": 3},
        "What is our collection rate by location?": {"query_id": "collection_rate"},
        "Summarise payroll for last month": {"query_id": "payroll_summary"},
    }
    for text, arguments in cases.items():
        (choice,) = _ask(text)["choices"]  # type: ignore[misc]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "sql_query" and json.loads(call["function"]["arguments"]) == arguments
    insights = _ask("Find insights to flag for review")["choices"][0]["message"]["tool_calls"]  # type: ignore[index]
    assert [json.loads(c["function"]["arguments"])["query_id"] for c in insights] == list(local_chat.INSIGHT_QUERIES)
    assert _ask("What is the weather?")["choices"][0]["message"]["content"] == local_chat.HELP  # type: ignore[index]
    assert _ask("top locations", tools=None)["choices"][0]["message"]["content"] == local_chat.HELP  # type: ignore[index]


def test_wording_copies_the_rows_values() -> None:
    result = {"query_id": "top_locations", "columns": ["practice_location", "collections"], "rows": [["a_1", "10.50"]]}
    answer = local_chat.predict({"messages": [{"role": "tool", "content": json.dumps(result)}]})
    assert (
        answer["choices"][0]["message"]["content"]
        == "The top 1 locations by collections are: 1. a_1 with 10.50 in collections."
    )
    empty = local_chat.predict({"messages": [{"role": "tool", "content": json.dumps({**result, "rows": []})}]})
    assert "no rows" in empty["choices"][0]["message"]["content"]


def test_served_as_a_chat_endpoint(ws: RunningWorkspace) -> None:
    name = ensure_local_chat_endpoint(ws)
    assert ensure_local_chat_endpoint(ws) == name  # idempotent
    with ws.admin_http() as http:
        body = {"messages": [{"role": "user", "content": "top 2 locations"}], "tools": TOOLS, "max_tokens": 100}
        r = http.post(f"/serving-endpoints/{name}/invocations", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])["limit"] == 2
