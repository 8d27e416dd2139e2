"""`filters_json` of a query, as Databricks' standard endpoints read it, turned into a SQL condition with bound
parameters (never formatted into the text).

Keys are a column name, optionally followed by an operator: `{"doc_id": "D1"}` (equal), `{"doc_id": ["D1", "D2"]}`
(in), `{"doc_id NOT": "D1"}` (not equal / not in), `{"n <": 5}`, `<=`, `>`, `>=`, `{"title LIKE": "policy"}` (the
word anywhere in the value, as Databricks' token match does for a plain word). Several keys are ANDed.
"""

from __future__ import annotations

import json
from typing import Any

from apev_workspace.vector_search.exceptions import InvalidParameterValue

_OPS = {"": "=", "NOT": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "LIKE": "LIKE"}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse(filters_json: str | None, columns: set[str]) -> tuple[str, list[Any]]:
    """(`AND`-joined condition or "TRUE", parameters) for `filters_json` over the index's `columns`."""
    if not filters_json:
        return "TRUE", []
    try:
        filters = json.loads(filters_json)
    except ValueError:
        raise InvalidParameterValue(f"filters_json is not valid JSON: {filters_json[:200]!r}") from None
    if not isinstance(filters, dict):
        raise InvalidParameterValue('filters_json must be a JSON object of {"<column> [operator]": value}')
    parts: list[str] = []
    params: list[Any] = []
    for key, value in filters.items():
        column, _, op = str(key).strip().partition(" ")
        op = op.strip().upper()
        if " OR " in str(key).upper() or op not in _OPS:
            raise InvalidParameterValue(
                f"Unsupported filter {key!r}: use '<column>' or '<column> <op>' with op one of "
                f"{', '.join(o for o in _OPS if o)} (OR filters are not emulated locally)"
            )
        if column not in columns:
            raise InvalidParameterValue(f"Filter column {column!r} is not a column of the index: {sorted(columns)}")
        sql_op = _OPS[op]
        if isinstance(value, list):
            if sql_op not in ("=", "<>") or not value:
                raise InvalidParameterValue(f"Filter {key!r}: a list needs '=' or 'NOT' and at least one value")
            marks = ", ".join("?" for _ in value)
            parts.append(f"CAST({quote(column)} AS VARCHAR) {'NOT IN' if sql_op == '<>' else 'IN'} ({marks})")
            params += [_text(v) for v in value]
        elif sql_op == "LIKE":
            parts.append(f"lower(CAST({quote(column)} AS VARCHAR)) LIKE ?")
            params.append(f"%{_text(value).lower()}%")
        elif isinstance(value, bool | int | float) and sql_op not in ("=", "<>"):
            parts.append(f"{quote(column)} {sql_op} ?")
            params.append(value)
        else:
            parts.append(f"CAST({quote(column)} AS VARCHAR) {sql_op} ?")
            params.append(_text(value))
    return " AND ".join(parts) or "TRUE", params


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
