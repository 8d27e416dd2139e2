"""The rows and vectors of one index: a DuckDB file, searched exactly (no approximate index).

Table `items`: the primary key, the synced columns in their types, `_vec FLOAT[<dimension>]`, and two hashes a
Delta Sync uses to re-embed only rows whose text changed (`_text_hash`) and rewrite only rows that changed
(`_row_hash`). Search is `array_distance` (L2) over every row that passes the filter, in DuckDB's vectorised C++
(numpy is not a dependency of this project); score = 1 / (1 + distance²), highest first, which for unit vectors
orders exactly as cosine similarity.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from apev_workspace.vector_search.exceptions import InvalidParameterValue
from apev_workspace.vector_search.filters import quote

# Databricks type names (UC columns, schema_json) -> DuckDB types of the index table.
DUCK_TYPES = {
    "STRING": "VARCHAR", "CHAR": "VARCHAR", "VARCHAR": "VARCHAR",
    "INT": "BIGINT", "INTEGER": "BIGINT", "LONG": "BIGINT", "BIGINT": "BIGINT", "SHORT": "BIGINT",
    "SMALLINT": "BIGINT", "BYTE": "BIGINT", "TINYINT": "BIGINT",
    "FLOAT": "DOUBLE", "DOUBLE": "DOUBLE", "DECIMAL": "DOUBLE",
    "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP", "TIMESTAMP_NTZ": "TIMESTAMP",
}  # fmt: skip
HIDDEN = ("_vec", "_row_hash", "_text_hash")


def duck_type(databricks_type: str) -> str:
    base = databricks_type.strip().upper().split("(")[0]
    if base not in DUCK_TYPES:
        raise InvalidParameterValue(f"Unsupported column type {databricks_type!r} for a vector index")
    return DUCK_TYPES[base]


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


class Vectors:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = duckdb.connect(str(path))
        self.write_lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        cur = self._db.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def create(self, primary_key: str, columns: dict[str, str], dimension: int) -> None:
        """(Re)create the table: `columns` maps name -> DuckDB type, the primary key among them."""
        defs = [f"{quote(n)} {t}{' PRIMARY KEY' if n == primary_key else ''}" for n, t in columns.items()]
        defs += [f"_vec FLOAT[{int(dimension)}]", "_row_hash VARCHAR", "_text_hash VARCHAR"]
        with self.write_lock, self.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS items")
            cur.execute(f"CREATE TABLE items ({', '.join(defs)})")

    def exists(self) -> bool:
        with self.cursor() as cur:
            return bool(cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'items'").fetchone()[0])

    def count(self) -> int:
        if not self.exists():
            return 0
        with self.cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM items").fetchone()[0])

    def hashes(self) -> dict[str, tuple[str, str]]:
        """primary key -> (row hash, text hash) of every stored row."""
        with self.cursor() as cur:
            pk = self._pk(cur)
            rows = cur.execute(f"SELECT CAST({quote(pk)} AS VARCHAR), _row_hash, _text_hash FROM items").fetchall()  # noqa: S608
        return {str(k): (str(r), str(t)) for k, r, t in rows}

    def vectors_of(self, keys: Iterable[str]) -> dict[str, list[float]]:
        wanted = list(keys)
        if not wanted:
            return {}
        with self.cursor() as cur:
            pk = self._pk(cur)
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS _wanted (k VARCHAR)")
            cur.execute("DELETE FROM _wanted")
            cur.execute("INSERT INTO _wanted SELECT unnest(CAST(? AS VARCHAR[]))", [wanted])
            rows = cur.execute(
                f"SELECT CAST(i.{quote(pk)} AS VARCHAR), i._vec FROM items i JOIN _wanted w"  # noqa: S608
                f" ON CAST(i.{quote(pk)} AS VARCHAR) = w.k"
            ).fetchall()
        return {str(k): list(v) for k, v in rows}

    def _pk(self, cur: Any) -> str:
        info = cur.execute("SELECT name FROM pragma_table_info('items') WHERE pk").fetchone()
        return str(info[0])

    def columns(self) -> dict[str, str]:
        with self.cursor() as cur:
            found = cur.execute("SELECT name, type FROM pragma_table_info('items')").fetchall()
        return {str(n): str(t) for n, t in found if n not in HIDDEN}

    def write(self, rows: list[dict[str, Any]], delete: Iterable[str] = ()) -> None:
        """Delete the `delete` keys (those of replaced rows among them), then insert `rows` (each with every column,
        `_vec`, `_row_hash`, `_text_hash`), in one transaction. Rows go through an NDJSON file and `read_json`:
        one statement, whatever the size."""
        columns = self.columns()
        removed = list(delete)
        with self.write_lock, self.cursor() as cur:
            pk = self._pk(cur)
            handle, name = tempfile.mkstemp(suffix=".json", dir=self.path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    for row in rows:
                        out.write(json.dumps({k: _json_value(v) for k, v in row.items()}, default=str) + "\n")
                cur.execute("BEGIN TRANSACTION")
                try:
                    if removed:
                        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _gone (k VARCHAR)")
                        cur.execute("DELETE FROM _gone")
                        cur.execute("INSERT INTO _gone SELECT unnest(CAST(? AS VARCHAR[]))", [removed])
                        cur.execute(f"DELETE FROM items WHERE CAST({quote(pk)} AS VARCHAR) IN (SELECT k FROM _gone)")  # noqa: S608
                    if rows:
                        spec = {n: "VARCHAR" for n in columns} | {"_vec": "DOUBLE[]", "_row_hash": "VARCHAR",
                                                                   "_text_hash": "VARCHAR"}  # fmt: skip
                        dim = self.dimension(cur)
                        select = [f"CAST({quote(n)} AS {t})" for n, t in columns.items()]
                        select += [f"CAST(_vec AS FLOAT[{dim}])", "_row_hash", "_text_hash"]
                        cur.execute(
                            f"INSERT INTO items SELECT {', '.join(select)} FROM read_json(?, columns = ?,"  # noqa: S608
                            " format = 'newline_delimited')",
                            [name, spec],
                        )
                    cur.execute("COMMIT")
                except Exception:
                    cur.execute("ROLLBACK")
                    raise
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def dimension(self, cur: Any | None = None) -> int:
        def read(c: Any) -> int:
            kind = str(c.execute("SELECT type FROM pragma_table_info('items') WHERE name = '_vec'").fetchone()[0])
            return int(kind.split("[")[1].rstrip("]"))

        if cur is not None:
            return read(cur)
        with self.cursor() as c:
            return read(c)

    def search(
        self,
        vector: list[float],
        columns: list[str],
        limit: int,
        where: str,
        params: list[Any],
        score_threshold: float | None = None,
    ) -> list[list[Any]]:
        """The `limit` nearest rows passing `where`: the requested columns' values, then the score."""
        dim = self.dimension()
        selected = ", ".join(quote(c) for c in columns)
        threshold = "" if score_threshold is None else " WHERE score >= ?"
        statement = (
            f"SELECT * FROM (SELECT {selected}{', ' if columns else ''}"  # noqa: S608
            f"1.0 / (1.0 + pow(array_distance(_vec, CAST(? AS FLOAT[{dim}])), 2)) AS score"
            f" FROM items WHERE {where}){threshold} ORDER BY score DESC LIMIT ?"
        )
        args: list[Any] = [vector, *params] + ([score_threshold] if score_threshold is not None else []) + [limit]
        with self.cursor() as cur:
            found = cur.execute(statement, args).fetchall()
        return [[_json_value(v) for v in row] for row in found]
