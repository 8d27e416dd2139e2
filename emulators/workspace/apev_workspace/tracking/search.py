"""MLflow's search syntax, the part clients send: `filter` clauses joined by AND, and `order_by` keys.

    metrics.accuracy >= 0.8 AND params.model = 'demo' AND tags.`ap agent` != 'x'
    attributes.status = 'FINISHED' AND attributes.run_name LIKE 'deploy-%'   (run_id IN ('a', 'b'))
    name LIKE '/Users/%' AND tags.team = 'dental'                            (experiments)

Entities are plain dicts: `value(entity, kind, key)` is supplied by the caller, so runs and experiments share
the parser. Anything outside this subset is refused with INVALID_PARAMETER_VALUE naming the clause.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apev_workspace.tracking.exceptions import InvalidParameterValue

_IDENT = r"(?:(?P<kind>metrics?|params?|parameters?|tags?|attributes?|attr|run)\.)?(?P<key>`[^`]+`|\"[^\"]+\"|[\w.\-]+)"
_VALUE = r"(?P<value>'(?:[^']|'')*'|\"[^\"]*\"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\((?:[^)]*)\))"
_CLAUSE = re.compile(
    rf"\s*{_IDENT}\s*(?P<op>!=|>=|<=|=|<|>|\bNOT\s+ILIKE\b|\bNOT\s+LIKE\b|\bILIKE\b|\bLIKE\b|\bNOT\s+IN\b|\bIN\b)\s*{_VALUE}\s*",
    re.IGNORECASE,
)
KINDS = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}


@dataclass(frozen=True)
class Clause:
    kind: str  # metrics, params, tags, attributes
    key: str
    op: str
    value: Any


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"'":
        return text[1:-1].replace("''", "'") if text[0] == "'" else text[1:-1]
    return text


_PIECES = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|`[^`]*`|\([^)]*\)|\s+AND\s+|.", re.IGNORECASE | re.DOTALL)


def _split_and(text: str) -> list[str]:
    """The clauses between ANDs that are outside quotes and parentheses."""
    parts: list[str] = []
    current: list[str] = []
    for m in _PIECES.finditer(text):
        token = m.group(0)
        if token[0].isspace() and token.strip().upper() == "AND":
            parts.append("".join(current))
            current = []
        else:
            current.append(token)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_filter(text: str | None, default_kind: str = "attributes") -> list[Clause]:
    if not text or not text.strip():
        return []
    out = []
    for part in _split_and(text):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise InvalidParameterValue(f"Invalid filter clause {part!r}: expected <key> <comparator> <value>")
        kind = KINDS[m["kind"].lower()] if m["kind"] else default_kind
        op = re.sub(r"\s+", " ", m["op"].upper())
        raw = m["value"]
        value: Any
        if raw.startswith("("):
            value = [_unquote(v.strip()) for v in raw[1:-1].split(",") if v.strip()]
            if op not in ("IN", "NOT IN"):
                raise InvalidParameterValue(f"Invalid filter clause {part!r}: a list needs IN or NOT IN")
        elif raw[0] in "'\"":
            value = _unquote(raw)
        else:
            value = float(raw)
        if kind == "metrics" and isinstance(value, str):
            raise InvalidParameterValue(f"Invalid filter clause {part!r}: metrics compare with numbers")
        if kind in ("params", "tags") and not isinstance(value, str):
            raise InvalidParameterValue(f"Invalid filter clause {part!r}: {kind} compare with quoted strings")
        out.append(Clause(kind, _unquote(m["key"]), op, value))
    return out


def _like(pattern: str, text: str, flags: int = 0) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags | re.DOTALL) is not None


def compare(op: str, left: Any, right: Any) -> bool:
    if left is None:
        return False
    if op in ("IN", "NOT IN"):
        return (str(left) in right) == (op == "IN")
    if op in ("LIKE", "NOT LIKE"):
        return _like(str(right), str(left)) == (op == "LIKE")
    if op in ("ILIKE", "NOT ILIKE"):
        return _like(str(right), str(left), re.IGNORECASE) == (op == "ILIKE")
    if isinstance(right, float):
        try:
            left = float(left)
        except (TypeError, ValueError):
            return False
    else:
        left = str(left)
    return bool(
        {
            "=": left == right,
            "!=": left != right,
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[op]
    )


def matches(entity: Any, clauses: list[Clause], value: Callable[[Any, str, str], Any]) -> bool:
    return all(compare(c.op, value(entity, c.kind, c.key), c.value) for c in clauses)


def parse_order(order_by: list[str] | None, default_kind: str = "attributes") -> list[tuple[str, str, bool]]:
    """[(kind, key, descending)]"""
    out = []
    for item in order_by or []:
        m = re.fullmatch(rf"\s*{_IDENT}(?:\s+(?P<dir>ASC|DESC))?\s*", item, re.IGNORECASE)
        if m is None:
            raise InvalidParameterValue(f"Invalid order_by clause {item!r}: expected <key> [ASC|DESC]")
        kind = KINDS[m["kind"].lower()] if m["kind"] else default_kind
        out.append((kind, _unquote(m["key"]), (m["dir"] or "ASC").upper() == "DESC"))
    return out


def sort(items: list[Any], order: list[tuple[str, str, bool]], value: Callable[[Any, str, str], Any]) -> list[Any]:
    """Stable sorts from the last key to the first; missing values sort last in either direction."""
    for kind, key, desc in reversed(order):
        present = [i for i in items if value(i, kind, key) is not None]
        missing = [i for i in items if value(i, kind, key) is None]
        present.sort(key=lambda i: _sortable(value(i, kind, key)), reverse=desc)
        items = present + missing
    return items


def _sortable(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) else (1, str(v))
