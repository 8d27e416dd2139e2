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


DOC_TOOLS = [*TOOLS, {"type": "function", "function": {"name": "search_documents", "parameters": {}}}]


def _calls(text: str, tools: list[dict[str, object]] = DOC_TOOLS) -> list[tuple[str, dict[str, object]]]:
    message = _ask(text, tools)["choices"][0]["message"]  # type: ignore[index]
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message.get("tool_calls") or []]


def test_document_questions_route_to_search_documents_and_combine_with_sql() -> None:
    question = "What does the Delta Dental contract say about crowns?"
    assert _calls(question) == [("search_documents", {"query": question, "num_results": 3})]
    both = "What are our top 3 performing locations, and what does our cancellation policy say?"
    assert _calls(both) == [
        ("sql_query", {"query_id": "top_locations", "limit": 3}),
        ("search_documents", {"query": both, "num_results": 3}),
    ]
    assert _calls("How do we stop no-shows? Check the policy") == [
        ("search_documents", {"query": "How do we stop no-shows? Check the policy", "num_results": 3})
    ]  # "top" inside "stop" is not a SQL question
    assert _calls(question, TOOLS) == []  # no document tool offered: nothing to search with
    result = {
        "query_id": "search_documents",
        "columns": ["document_id", "title", "chunk_id", "chunk_text", "score"],
        "rows": [["D-1", "Delta contract", "D-1#0", "Crowns at 50 percent.", 0.4], ["D-2", "Notes", "D-2#0", "x", 0.1]],
    }
    worded = local_chat.predict({"messages": [{"role": "tool", "content": json.dumps(result)}]})
    assert worded["choices"][0]["message"]["content"] == (
        'The most relevant document is "Delta contract" (D-1): "Crowns at 50 percent." Also relevant: "Notes" (D-2).'
    )
