"""The DuckDB engine: one in-process DuckDB instance, each Unity Catalog catalog a database file attached
to it (`<data dir>/catalogs/<catalog>.duckdb`, re-attached at start), and one lock per catalog.

Why one instance and not one connection per file: a query (or a view) may join tables of two catalogs,
which needs both attached to one connection, and DuckDB allows a file open in one instance only. Every
statement runs on its own cursor (a DuckDB connection to the shared instance), holding the locks of the
catalogs it touches, taken in name order: statements on one catalog are serialised, statements on
different catalogs run in parallel. Metadata reads (table lists, columns) take no catalog lock (DuckDB's
MVCC gives them a consistent snapshot). Rule against deadlocks: while holding catalog locks the engine
never waits for the workspace lock; Unity Catalog may take catalog locks while holding the workspace lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from apev_workspace.sql.system import SystemTables, materialize
from apev_workspace.sql.translate import duck_catalog
from apev_workspace.sql.types import databricks_type

SYSTEM = "system"
PLACEHOLDER = "__apev_no_columns"  # the column of a table created without columns, hidden from its schema


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Engine:
    def __init__(self, data_dir: Path, system_tables: SystemTables, readable: Iterable[Path] = ()) -> None:
        self.dir = data_dir / "catalogs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.system_tables = system_tables
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET GLOBAL TimeZone = 'UTC'")
        self._db.execute(f"ATTACH ':memory:' AS {quote(duck_catalog(SYSTEM))}")
        # A second wall behind the table-function whitelist: DuckDB itself may only touch the catalog files and
        # the volumes (COPY INTO), never another path, and SQL cannot switch this back on.
        allowed = ", ".join("'" + str(p).replace("'", "''") + "/'" for p in [self.dir, *readable])
        self._db.execute(f"SET GLOBAL allowed_directories = [{allowed}]")
        self._db.execute("SET GLOBAL enable_external_access = false")
        self._cursor_lock = threading.Lock()
        self._locks_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def cursor(self) -> Any:
        with self._cursor_lock:
            return self._db.cursor()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()

    # ------------------------------------------------------------------ locks
    def _lock(self, catalog: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(catalog, threading.Lock())

    @contextlib.contextmanager
    def locked(self, catalogs: Iterable[str]) -> Iterator[None]:
        held: list[threading.Lock] = []
        try:
            for name in sorted(set(catalogs)):
                lock = self._lock(name)
                lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    # ------------------------------------------------------------------ catalogs and schemas (TableSource)
    def _file(self, catalog: str) -> Path:
        return self.dir / f"{catalog}.duckdb"

    def create_catalog(self, name: str) -> None:
        with self._cursor_lock:
            self._db.execute(f"ATTACH IF NOT EXISTS '{self._file(name)}' AS {quote(duck_catalog(name))}")

    def attach_all(self, names: Iterable[str]) -> None:
        for name in names:
            self.create_catalog(name)

    def drop_catalog(self, name: str) -> None:
        with self.locked([name]), self._cursor_lock:
            self._db.execute(f"DETACH DATABASE IF EXISTS {quote(duck_catalog(name))}")
        for suffix in ("", ".wal"):
            Path(f"{self._file(name)}{suffix}").unlink(missing_ok=True)

    def create_schema(self, catalog: str, schema: str) -> None:
        with self.locked([catalog]), contextlib.closing(self.cursor()) as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(duck_catalog(catalog))}.{quote(schema)}")

    def drop_schema(self, catalog: str, schema: str) -> None:
        with self.locked([catalog]), contextlib.closing(self.cursor()) as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {quote(duck_catalog(catalog))}.{quote(schema)} CASCADE")

    def drop_table(self, catalog: str, schema: str, name: str) -> None:
        target = f"{quote(duck_catalog(catalog))}.{quote(schema)}.{quote(name)}"
        with self.locked([catalog]), contextlib.closing(self.cursor()) as cur:
            kind = self._kind(cur, catalog, schema, name)
            if kind is not None:
                cur.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {target}")

    def _kind(self, cur: Any, catalog: str, schema: str, name: str) -> str | None:
        row = cur.execute(
            "SELECT 'MANAGED' FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?"
            " UNION ALL SELECT 'VIEW' FROM duckdb_views() WHERE database_name = ? AND schema_name = ?"
            " AND view_name = ? AND NOT internal",
            [duck_catalog(catalog), schema, name] * 2,
        ).fetchone()
        return None if row is None else str(row[0])

    def columns(self, cur: Any, duck_name: str) -> list[dict[str, Any]]:
        described = cur.execute(f"SELECT * FROM {duck_name} LIMIT 0").description or []  # noqa: S608
        out = []
        visible = [(name, kind) for name, kind, *_rest in described if name != PLACEHOLDER]
        for position, (name, kind) in enumerate(visible):
            text, type_name = databricks_type(kind)
            column: dict[str, Any] = {
                "name": name,
                "type_text": text.lower(),
                "type_name": type_name,
                "position": position,
                "nullable": True,
            }
            if type_name == "DECIMAL":
                precision, scale = text[8:-1].split(",")
                column |= {"type_precision": int(precision), "type_scale": int(scale)}
            out.append(column)
        return out

    def list_tables(self, catalog: str, schema: str | None = None) -> list[dict[str, Any]]:
        with contextlib.closing(self.cursor()) as cur:
            return self._list_tables(cur, catalog, schema)

    def _list_tables(self, cur: Any, catalog: str, schema: str | None) -> list[dict[str, Any]]:
        rows = cur.execute(
            "SELECT schema_name, table_name, 'MANAGED' FROM duckdb_tables() WHERE database_name = ?"
            " UNION ALL SELECT schema_name, view_name, 'VIEW' FROM duckdb_views()"
            " WHERE database_name = ? AND NOT internal ORDER BY 1, 2",
            [duck_catalog(catalog)] * 2,
        ).fetchall()
        out = []
        for sch, name, kind in rows:
            if schema is not None and sch != schema:
                continue
            duck_name = f"{quote(duck_catalog(catalog))}.{quote(sch)}.{quote(name)}"
            try:
                columns = self.columns(cur, duck_name)
            except duckdb.Error:
                columns = []  # a view whose source is gone still lists, as on Databricks
            out.append(
                {
                    "full_name": f"{catalog}.{sch}.{name}",
                    "catalog_name": catalog,
                    "schema_name": sch,
                    "name": name,
                    "table_type": kind,
                    "columns": columns,
                }
            )
        return out

    # ------------------------------------------------------------------ system catalog
    def load_system_table(self, cur: Any, schema: str, name: str) -> bool:
        """Refresh `system.<schema>.<name>` from its provider; False when no provider is registered."""
        table = self.system_tables.get(f"{schema}.{name}")
        if table is None:
            return False
        db = quote(duck_catalog(SYSTEM))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {db}.{quote(schema)}")
        materialize(cur, table, f"{db}.{quote(schema)}.{quote(name)}")
        return True
