"""A deterministic chat model for the local workspace: LOCAL-ONLY, no model weights, no language model.

It stands in for a Foundation Model chat endpoint (OpenAI-compatible `messages`, `tools`, `tool_calls`) so agents
can be built as on Databricks and tested offline. It does two things, both by rule:

- **Intent routing.** The last user message is matched against keyword rules (`INTENTS`); when the request offers
  a tool named `sql_query`, the answer is one `tool_calls` entry (`finish_reason: "tool_calls"`) asking for the
  matching named query, e.g. `{"query_id": "top_locations", "limit": 3}`. No match: a fixed help sentence.
- **Document questions.** When the request also offers a tool named `search_documents` and the message names a
  document word (`DOCUMENT_WORDS`: policy, contract, meeting notes, payer, coverage, ...), the answer asks for it
  too (`{"query": <the question>, "num_results": 3}`), alongside the SQL call when the question needs both.
- **Templated wording.** When the last message is a `tool` result (`{"query_id", "columns", "rows"}`), the answer
  words it with a fixed template per query id, copying values from the rows as given (it never computes,
  rounds or invents a figure); a `search_documents` result is worded by its best document's title, id and text.

Served like any model version (`predict(inputs) -> dict` on the chat body); `ensure_local_chat_endpoint` in
`apev_workspace.serving.chat` registers it and creates the endpoint. Never deployed to a real workspace.
"""

from __future__ import annotations

import json
import re
from typing import Any

INTENTS: list[tuple[str, tuple[str, ...]]] = [
    ("insights", ("insight", "anomal", "flag for review")),
    ("payroll_summary", ("payroll", "wages", "gross pay")),
    ("collection_rate", ("collection rate", "collection-rate", "collections rate", "collected")),
    ("top_locations", ("top", "best", "perform", "leading", "highest")),
]
DOCUMENT_WORDS = ("policy", "policies", "contract", "document", "meeting", "notes", "agreement", "payer",
                  "coverage", "covered", "pays", "pre-authoris", "pre-authoriz", "waiting period", "deductible",
                  "annual maximum", "procedure", "recall", "cancel", "guideline", "rule")  # fmt: skip
DOCUMENT_TOOL = "search_documents"
INSIGHT_QUERIES = ("collection_rate_change", "payroll_change")
HELP = "I can answer questions about top performing locations, collection rates and payroll summaries."
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "ten": 10}


def route(text: str) -> str | None:
    lowered = text.lower()
    for intent, words in INTENTS:
        if any(w in lowered for w in words):
            return intent
    return None


def about_documents(text: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in DOCUMENT_WORDS)


def _limit(text: str, default: int = 3) -> int:
    found = re.search(r"\btop\s+(\d+|\w+)", text.lower())
    if not found:
        return default
    word = found.group(1)
    value = int(word) if word.isdigit() else _NUMBER_WORDS.get(word, default)
    return max(1, min(value, 50))


def _tool_names(body: dict[str, Any]) -> set[str]:
    names = set()
    for tool in body.get("tools") or (body.get("extra_params") or {}).get("tools") or []:
        if isinstance(tool, dict):
            names.add(str((tool.get("function") or {}).get("name") or tool.get("name") or ""))
    return names


def _call(call_id: str, arguments: dict[str, Any], name: str = "sql_query") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _choice(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    columns = list(result.get("columns") or [])
    return [dict(zip(columns, row, strict=False)) for row in result.get("rows") or []]


def word(result: dict[str, Any]) -> str:
    """The templated sentence for one tool result; values are copied from the rows, never computed."""
    query_id, rows = result.get("query_id"), _rows(result)
    if not rows:
        return "The query returned no rows, so there is nothing to report for that question."
    if query_id == DOCUMENT_TOOL:
        best, others = rows[0], rows[1:3]
        text = f'The most relevant document is "{best["title"]}" ({best["document_id"]}): "{best["chunk_text"]}"'
        if others:
            text += " Also relevant: " + "; ".join(f'"{r["title"]}" ({r["document_id"]})' for r in others)
        return text + "."
    if query_id == "top_locations":
        parts = [f"{i}. {r['practice_location']} with {r['collections']} in collections" for i, r in enumerate(rows, 1)]
        return f"The top {len(rows)} locations by collections are: " + "; ".join(parts) + "."
    if query_id == "collection_rate":
        month = rows[0].get("month")
        parts = [f"{r['practice_location']} {r['collection_rate']}" for r in rows]
        return f"Collection rate by location for {month}: " + "; ".join(parts) + "."
    if query_id == "payroll_summary":
        month = rows[0].get("month")
        parts = [
            f"{r['practice_location']} {r['gross_pay']} gross, {r['net_pay']} net, {r['active_employees']} employees"
            for r in rows
        ]
        return f"Payroll for {month}: " + "; ".join(parts) + "."
    if query_id == "collection_rate_change":
        r = rows[0]
        return (
            f"Collection rate at {r['practice_location']} fell from {r['previous_rate']} in {r['previous_month']} "
            f"to {r['collection_rate']} in {r['month']}."
        )
    if query_id == "payroll_change":
        r = rows[0]
        return (
            f"Gross payroll at {r['practice_location']} changed from {r['previous_gross_pay']} in "
            f"{r['previous_month']} to {r['gross_pay']} in {r['month']}; flagged for review."
        )
    return "Here are the rows the query returned: " + json.dumps(result.get("rows"))


def predict(inputs: dict[str, Any]) -> dict[str, Any]:
    messages = [m for m in inputs.get("messages") or [] if isinstance(m, dict)]
    if not messages:
        return _choice({"content": HELP}, "stop")
    last = messages[-1]
    if last.get("role") == "tool":
        try:
            result = json.loads(str(last.get("content") or "{}"))
        except ValueError:
            result = {}
        return _choice({"content": word(result if isinstance(result, dict) else {})}, "stop")
    text = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    intent = route(text)
    tools = _tool_names(inputs)
    documents = DOCUMENT_TOOL in tools and about_documents(text) and intent != "insights"
    if intent is not None and intent != "insights" and about_documents(text) and not _sql_words(text, intent):
        intent = None  # a document word alone (e.g. "top" inside "stop") does not make a SQL question
    if documents:
        calls = [_call("call_doc", {"query": text, "num_results": 3}, DOCUMENT_TOOL)]
        if intent is not None and "sql_query" in tools:
            calls.insert(0, _call("call_0", _arguments(intent, text)))
        return _choice({"content": None, "tool_calls": calls}, "tool_calls")
    if intent is None or "sql_query" not in tools:
        return _choice({"content": HELP}, "stop")
    if intent == "insights":
        calls = [_call(f"call_{i}", {"query_id": q}) for i, q in enumerate(INSIGHT_QUERIES)]
    else:
        calls = [_call("call_0", _arguments(intent, text))]
    return _choice({"content": None, "tool_calls": calls}, "tool_calls")


def _arguments(intent: str, text: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {"query_id": intent}
    if intent == "top_locations":
        arguments["limit"] = _limit(text)
    return arguments


def _sql_words(text: str, intent: str) -> bool:
    """The intent's keywords as whole words (document questions are often long; a substring match is not enough)."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    keys = dict(INTENTS)[intent]
    return any(k in words or (" " in k and k in text.lower()) for k in keys) or any(
        w.startswith(k) for k in keys for w in words if len(k) >= 5
    )
