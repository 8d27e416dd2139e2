"""DuckDB types and values in Databricks' vocabulary: `type_text`/`type_name`, and JSON_ARRAY strings."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

_SIMPLE = {
    "varchar": ("STRING", "STRING"),
    "bigint": ("BIGINT", "LONG"),
    "integer": ("INT", "INT"),
    "smallint": ("SMALLINT", "SHORT"),
    "tinyint": ("TINYINT", "BYTE"),
    "ubigint": ("BIGINT", "LONG"),
    "uinteger": ("BIGINT", "LONG"),
    "usmallint": ("INT", "INT"),
    "utinyint": ("SMALLINT", "SHORT"),
    "hugeint": ("DECIMAL(38,0)", "DECIMAL"),
    "uhugeint": ("DECIMAL(38,0)", "DECIMAL"),
    "double": ("DOUBLE", "DOUBLE"),
    "float": ("FLOAT", "FLOAT"),
    "boolean": ("BOOLEAN", "BOOLEAN"),
    "date": ("DATE", "DATE"),
    "timestamp with time zone": ("TIMESTAMP", "TIMESTAMP"),
    "timestamp": ("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
    "timestamp_s": ("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
    "timestamp_ms": ("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
    "timestamp_ns": ("TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
    "blob": ("BINARY", "BINARY"),
    "interval": ("INTERVAL", "INTERVAL"),
    "null": ("VOID", "NULL"),
    "uuid": ("STRING", "STRING"),
    "json": ("STRING", "STRING"),
    "time": ("STRING", "STRING"),
}


def databricks_type(t: Any) -> tuple[str, str]:
    """(type_text, type_name) of a DuckDB type object (`DuckDBPyType`), e.g. ("DECIMAL(10,2)", "DECIMAL")."""
    kind = str(t.id)
    if kind == "decimal":
        params = dict(t.children)
        return f"DECIMAL({params['precision']},{params['scale']})", "DECIMAL"
    if kind == "list" or kind == "array":
        return f"ARRAY<{databricks_type(dict(t.children)['child'])[0]}>", "ARRAY"
    if kind == "map":
        params = dict(t.children)
        return f"MAP<{databricks_type(params['key'])[0]},{databricks_type(params['value'])[0]}>", "MAP"
    if kind == "struct":
        fields = ",".join(f"{name}:{databricks_type(child)[0]}" for name, child in t.children)
        return f"STRUCT<{fields}>", "STRUCT"
    return _SIMPLE.get(kind, ("STRING", "STRING"))


def sql_type_name(type_name: str) -> str:
    """The Statement Execution API's `type_name` enum has no TIMESTAMP_NTZ (the catalog's has)."""
    return "TIMESTAMP" if type_name == "TIMESTAMP_NTZ" else type_name


def _plain(value: Any) -> Any:
    """A nested value as JSON-ready data (inside arrays, maps and structs)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else to_string(value)
    if isinstance(value, Decimal):
        return float(value)
    return to_string(value)


def to_string(value: Any) -> str | None:
    """One cell as Databricks' JSON_ARRAY format writes it: a string, or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        out = text.isoformat(timespec="milliseconds")
        return out + "Z" if value.tzinfo else out
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict | list | tuple):
        return json.dumps(_plain(value), separators=(",", ":"))
    return str(value)
