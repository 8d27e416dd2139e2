"""`COPY INTO <table> FROM '/Volumes/...' | (SELECT <expressions> FROM '/Volumes/...')
FILEFORMAT = JSON|CSV|PARQUET [PATTERN = '...'] [FORMAT_OPTIONS (...)]
[COPY_OPTIONS (...)]`, idempotent as on Databricks: files already loaded into the table are skipped (the
loaded paths are kept per table in the store, reset when the table is dropped or replaced), unless
`COPY_OPTIONS ('force' = 'true')`. The SELECT form may add columns (`current_timestamp()`, `:param` markers,
`_metadata.file_path`, `_metadata.file_name`) and pick or cast the files' columns. `'mergeSchema' = 'true'`
adds columns the files have and the table has not.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from apev_workspace.files.models import resolve
from apev_workspace.sql import translate as t
from apev_workspace.sql.engine import PLACEHOLDER, quote
from apev_workspace.sql.exceptions import SqlError, unsupported
from apev_workspace.sql.translate import duck_catalog

if TYPE_CHECKING:
    from apev_workspace.sql.session import Session

KIND = "sql_copy_into"
_OPTION = re.compile(r"'([^']+)'\s*=\s*(?:'((?:[^']|'')*)'|(\w+))")


def _clause(text: str, keyword: str) -> tuple[dict[str, str], str]:
    match = re.search(keyword + r"\s*\(([^)]*)\)", text, re.IGNORECASE)
    if match is None:
        return {}, text
    options = {
        m[1].lower(): (m[2] if m[2] is not None else m[3]).replace("''", "'") for m in _OPTION.finditer(match[1])
    }
    return options, text[: match.start()] + text[match.end() :]


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _true(options: dict[str, str], key: str, default: bool = False) -> bool:
    return options.get(key.lower(), str(default)).lower() == "true"


def reader(fmt: str, files: list[Path], options: dict[str, str]) -> str:
    listed = "[" + ", ".join(_lit(str(f)) for f in files) + "]"
    if fmt == "JSON":
        layout = "auto" if _true(options, "multiLine") else "newline_delimited"
        return f"read_json_auto({listed}, format = '{layout}', union_by_name = true)"
    if fmt == "CSV":
        args = [f"header = {str(_true(options, 'header')).lower()}", "union_by_name = true"]
        if not _true(options, "inferSchema"):
            args.append("all_varchar = true")
        delimiter = options.get("sep") or options.get("delimiter")
        if delimiter:
            args.append(f"delim = {_lit(delimiter)}")
        return f"read_csv({listed}, {', '.join(args)})"
    if fmt == "PARQUET":
        return f"read_parquet({listed}, union_by_name = true)"
    raise unsupported(f"COPY INTO with FILEFORMAT = {fmt}")


def _split_query(source: str) -> tuple[str, str, str]:
    """`(SELECT ... FROM '<path>' [alias]) rest` -> (the query with the path as `apev_copy_source`, path, rest)."""
    depth, quoted = 0, False
    for i, ch in enumerate(source):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                query, rest = source[source.index("(") + 1 : i], source[i + 1 :]
                break
    else:
        raise SqlError("COPY_INTO_SYNTAX_ERROR", "COPY INTO ... FROM (SELECT ...): unbalanced parentheses.")
    found = list(re.finditer(r"\bFROM\s+'((?:[^']|'')*)'", query, re.IGNORECASE))
    if len(found) != 1:
        raise SqlError("COPY_INTO_SYNTAX_ERROR", "COPY INTO ... FROM (SELECT ... FROM '<path>'): one source path.")
    m = found[0]
    return query[: m.start()] + f"FROM {SOURCE}" + query[m.end() :], m[1].replace("''", "'"), rest


def _projection(query: str, params: dict[str, tuple[Any, str]], files: str) -> str:
    """The COPY INTO query in DuckDB: `_metadata.file_path`/`file_name` read the file each row came from."""
    tree = t.bind_parameters(t.parse(query), params)
    if not isinstance(tree, exp.Select) or any(x.name != SOURCE for x in tree.find_all(exp.Table)):
        raise unsupported("COPY INTO from a query that is not one SELECT over the source path")

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.table.lower() == "_metadata":
            field = METADATA.get(node.name.lower())
            if field is None:
                raise unsupported(f"_metadata.{node.name}")
            return exp.column(field, quoted=True)
        if isinstance(node, exp.Star):
            node.set("except_", [exp.column(c, quoted=True) for c in METADATA.values()])
        return node

    if tree.args.get("with_"):
        raise unsupported("COPY INTO from a query with WITH")
    return f"WITH {SOURCE} AS ({files}) {t.to_duckdb(t.rewrite_functions(tree.transform(replace)))}"


SOURCE = "apev_copy_source"
METADATA = {"file_path": "__apev_file_path", "file_name": "__apev_file_name"}


def copy_into(
    session: Session, full_name: str, source: str, params: dict[str, tuple[Any, str]] | None = None
) -> tuple[list[str], list[list[Any]]]:
    query = None
    if source.lstrip().startswith("("):
        query, path, rest = _split_query(source.strip())
        _projection(query, params or {}, "SELECT 1")  # a bad query fails even when no file is new
    else:
        match = re.match(r"\s*'((?:[^']|'')*)'\s*(.*)$", source, re.DOTALL)
        if match is None:
            raise SqlError(
                "COPY_INTO_SYNTAX_ERROR", "COPY INTO needs FROM '<path>' or FROM (SELECT ... FROM '<path>')."
            )
        path, rest = match[1].replace("''", "'"), match[2]
    format_options, rest = _clause(rest, "FORMAT_OPTIONS")
    copy_options, rest = _clause(rest, "COPY_OPTIONS")
    fmt_match = re.search(r"FILEFORMAT\s*=\s*(\w+)", rest, re.IGNORECASE)
    if fmt_match is None:
        raise SqlError("COPY_INTO_SYNTAX_ERROR", "COPY INTO needs FILEFORMAT = JSON, CSV or PARQUET.")
    fmt = fmt_match[1].upper()
    rest = rest[: fmt_match.start()] + rest[fmt_match.end() :]
    pattern_match = re.search(r"PATTERN\s*=\s*'([^']*)'", rest, re.IGNORECASE)
    if pattern_match is not None:
        rest = rest[: pattern_match.start()] + rest[pattern_match.end() :]
    if rest.strip():
        raise unsupported(f"COPY INTO clause {rest.strip()[:60]!r}")

    uc, who = session.uc, session.who
    volume = resolve(uc, path)
    uc.authorize(who, "VOLUME", volume.volume, "READ_VOLUME")
    uc.authorize(who, "TABLE", full_name, "MODIFY")
    if volume.disk.is_file():
        found = [volume.disk]
    elif volume.disk.is_dir():
        found = sorted(
            p
            for p in volume.disk.rglob("*")
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(volume.disk).parts)
        )
    else:
        raise SqlError("PATH_NOT_FOUND", f"Path does not exist: {path}.", sqlstate="42K03")
    if pattern_match is not None and volume.disk.is_dir():
        found = [p for p in found if fnmatch.fnmatch(str(p.relative_to(volume.disk)), pattern_match[1])]

    store = session.backend.store
    loaded: list[str] = list(store.load(KIND).get(full_name) or [])
    force = _true(copy_options, "force")
    new = [p for p in found if force or str(p) not in loaded]
    columns = ["num_affected_rows", "num_inserted_rows", "num_skipped_corrupt_files"]
    if not new:
        return columns, [[0, 0, 0]]

    catalog, schema, table = full_name.split(".")
    target = f"{quote(duck_catalog(catalog))}.{quote(schema)}.{quote(table)}"
    source_sql = reader(fmt, new, format_options)
    if query is not None:
        # the files with their /Volumes path (as `_metadata.file_path` shows it) and name next to the data
        root = str(uc.volume_path(volume.volume))
        prefix = "/Volumes/" + volume.volume.replace(".", "/")
        path_sql = f"{_lit(prefix)} || substr(filename, {len(root) + 1}) AS {METADATA['file_path']}"
        name_sql = f"regexp_extract(filename, '[^/]+$') AS {METADATA['file_name']}"
        reader_sql = f"{source_sql[:-1]}, filename = true)"
        files = f"SELECT * EXCLUDE (filename), {path_sql}, {name_sql} FROM {reader_sql}"  # noqa: S608
        source_sql = f"({_projection(query, params or {}, files)}) AS {SOURCE}"
    with session.engine.locked([catalog]):
        cur = session.prepare_cursor()
        existing = {c["name"].lower(): c["name"] for c in session.engine.columns(cur, target)}
        incoming = [(str(r[0]), str(r[1])) for r in cur.execute(f"DESCRIBE SELECT * FROM {source_sql}").fetchall()]  # noqa: S608
        extra = [(n, k) for n, k in incoming if n.lower() not in existing]
        if extra and _true(copy_options, "mergeSchema"):
            for name, kind in extra:
                cur.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {kind}")
                existing[name.lower()] = name
        placeholder = cur.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ?"
            " AND column_name = ?",
            [duck_catalog(catalog), schema, table, PLACEHOLDER],
        ).fetchone()
        if placeholder and placeholder[0] and existing:
            cur.execute(f"ALTER TABLE {target} DROP COLUMN {quote(PLACEHOLDER)}")
        names = [n for n, _ in incoming if n.lower() in existing]
        if not names:
            raise SqlError("COPY_INTO_SCHEMA_MISMATCH", f"The files share no column with {full_name}.")
        cols = ", ".join(quote(existing[n.lower()]) for n in names)
        picked = ", ".join(quote(n) for n in names)
        count = cur.execute(f"INSERT INTO {target} ({cols}) SELECT {picked} FROM {source_sql}").fetchone()  # noqa: S608
        inserted = int(count[0]) if count else 0
        store.put(KIND, full_name, sorted(set(loaded) | {str(p) for p in new}))
    return columns, [[inserted, inserted, 0]]
