"""The reserved `system` catalog: tables supplied by other areas through providers.

An area (billing, for `system.billing.usage` and `system.billing.list_prices`) registers a provider under
`<schema>.<table>`:

    workspace.sql.system_tables.register(
        "billing.usage",
        SystemTable(columns=[("record_id", "STRING"), ("usage_quantity", "DECIMAL(38,18)"), ...], rows=fn),
    )

`columns` use Databricks type names (STRING, BIGINT, DECIMAL(p,s), TIMESTAMP, DATE, MAP<STRING,STRING>,
STRUCT<a: STRING, ...>); `rows()` returns tuples (in column order) or dicts (by column name), read afresh
before every statement that references the table. Instead of `rows`, a provider may pass `load(cursor, name)`,
which fills the already-created DuckDB table `name` itself (for large tables). Only workspace admins read
system tables unless a grant on `system` says otherwise (grants are not manageable on `system` locally).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

Row = Sequence[Any] | dict[str, Any]


@dataclass
class SystemTable:
    columns: list[tuple[str, str]]  # (name, Databricks type)
    rows: Callable[[], Iterable[Row]] | None = None
    load: Callable[[Any, str], None] | None = None  # (duckdb cursor, quoted DuckDB table name)
    comment: str = ""


class SystemTables:
    """The registry of system tables, keyed `<schema>.<table>` (e.g. `billing.usage`)."""

    def __init__(self) -> None:
        self._tables: dict[str, SystemTable] = {}
        self._lock = threading.Lock()

    def register(self, name: str, table: SystemTable) -> None:
        schema, _, table_name = name.partition(".")
        if not schema or not table_name or "." in table_name:
            raise ValueError(f"System table names are <schema>.<table>, got {name!r}")
        if table.rows is None and table.load is None:
            raise ValueError("A system table needs rows or load")
        with self._lock:
            self._tables[name.lower()] = table

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tables.pop(name.lower(), None)

    def get(self, name: str) -> SystemTable | None:
        with self._lock:
            return self._tables.get(name.lower())

    def exists(self, kind: str, full_name: str) -> bool:
        """Whether `system[.schema[.table]]` names a registered table or its schema (for Unity Catalog grants)."""
        parts = full_name.lower().split(".")
        if parts[0] != "system" or kind not in ("CATALOG", "SCHEMA", "TABLE"):
            return False
        names = self.names()
        if kind == "CATALOG":
            return len(parts) == 1
        if kind == "SCHEMA":
            return len(parts) == 2 and any(n.split(".")[0] == parts[1] for n in names)
        return len(parts) == 3 and ".".join(parts[1:]) in names

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._tables)


def duckdb_type(databricks: str) -> str:
    return exp.DataType.build(databricks, dialect="databricks").sql(dialect="duckdb")


def materialize(cursor: Any, table: SystemTable, duck_name: str) -> None:
    """Create (or replace) the DuckDB table behind a system table and fill it from its provider."""
    columns = ", ".join(f'"{name}" {duckdb_type(kind)}' for name, kind in table.columns)
    cursor.execute(f"CREATE OR REPLACE TABLE {duck_name} ({columns})")
    if table.load is not None:
        table.load(cursor, duck_name)
        return
    assert table.rows is not None
    names = [name for name, _ in table.columns]
    rows = [tuple(r.get(n) for n in names) if isinstance(r, dict) else tuple(r) for r in table.rows()]
    if rows:
        marks = ", ".join("?" for _ in names)
        cursor.executemany(f"INSERT INTO {duck_name} VALUES ({marks})", rows)  # noqa: S608 (a quoted name)
