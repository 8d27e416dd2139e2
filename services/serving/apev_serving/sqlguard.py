"""The first wall of tenant SQL (ARCHITECTURE §4 rule 7): parse with sqlglot (Databricks dialect) and refuse,
before anything runs, a statement that reaches outside the tenant's catalog or is not a read.

    checked = check(text, catalog="agentprovision_t1", parameters={"loc": ...})
    checked.statement   # the SQL regenerated from the checked tree: what runs, and the cache's normal form

Refused, each naming the reference: several statements; anything but a query (USE, SET, DDL, DML, EXECUTE
IMMEDIATE, SHOW, DESCRIBE, ... also nested in a query); a name with a catalog other than the tenant's; a schema
that is a catalog in disguise (`system`, `information_schema`, `agentprovision_*`, path formats); names with more
than three parts; identifiers quoted to carry dots, slashes or other punctuation; table functions other than a
few generators; functions that read files, secrets, endpoints, other catalogs or name tables at run time
(`read_files`, `secret`, `ai_query`, `IDENTIFIER`, `reflect`, ...); CTE names that also name a real table in the
same statement; parameters used as names; `?` markers. Unity Catalog (the tenant reader's grants) is the second
wall: the guard never needs to know which tables exist.

Pure: no I/O. The statement that runs is the regenerated one, so the engine executes exactly the tree checked
here (comments dropped), not text a different parser might read otherwise.

`check_memo` is `check` remembered: a verdict (checked or refused) depends only on the text, the catalog and the
parameter names, and parsing was a quarter of a cache hit's time (bench/results/serving.json). It keeps the last
`MEMO_ENTRIES` verdicts of statements up to `MEMO_MAX_CHARS` characters (at most ~16 MiB of text).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError

from apev_contracts.naming import CATALOG_PREFIX

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # its "falling back to Command" warnings: refused anyway

DIALECT = "databricks"
_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Generators only: they read no table, file or stream.
TABLE_FUNCTIONS = frozenset(
    {"range", "explode", "explode_outer", "posexplode", "posexplode_outer", "inline", "inline_outer", "stack"}
)
# Functions that read files, streams, secrets, endpoints or other systems, execute code, or resolve a table
# name from a string at run time; prefixes below catch their families.
REFUSED_FUNCTIONS = frozenset(
    {
        "identifier", "secret", "try_secret", "list_secrets", "reflect", "java_method", "try_reflect",
        "http_request", "cloud_files_state", "vector_search", "query", "query_table", "getvariable",
        "current_setting", "getenv", "glob", "parquet_scan", "sniff_csv", "iceberg_scan", "delta_scan",
        "remote_query", "stream", "table_changes", "event_log", "sql_keywords", "session_user_tables",
    }
)  # fmt: skip
REFUSED_PREFIXES = ("read_", "ai_", "duckdb_", "pragma_", "python_")
# Schemas that are catalogs (or metadata spanning catalogs) in disguise, or a path-based read (`json.`/p``).
REFUSED_SCHEMAS = frozenset(
    {"system", "information_schema", "hive_metastore", "samples", "json", "csv", "parquet", "text", "binaryfile",
     "delta", "avro", "orc"}
)  # fmt: skip
READ_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
WRITE_NODES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Command, exp.Use, exp.Set, exp.Describe, exp.Copy, exp.LoadData, exp.Grant, exp.Cache, exp.Uncache,
    exp.Refresh, exp.Pragma, exp.Transaction, exp.Commit, exp.Rollback,
)  # fmt: skip


class Refusal(Exception):
    """A statement that will not run: HTTP status, a short code, the reference at fault and why."""

    def __init__(self, status: int, error: str, reference: str, why: str) -> None:
        super().__init__(f"{reference}: {why}")
        self.status, self.error, self.reference, self.why = status, error, reference, why

    @property
    def detail(self) -> str:
        return f"{self.reference}: {self.why}"


def _forbid(reference: str, why: str) -> Refusal:
    return Refusal(403, "forbidden", reference, why)


@dataclass(frozen=True)
class Checked:
    statement: str
    """The SQL regenerated from the checked tree (comments dropped): what runs, and the cache's normal form."""
    tables: tuple[str, ...]
    """The table references as written (for logs)."""
    parameters: tuple[str, ...]
    """The `:name` markers the statement uses."""


def _parse(text: str) -> exp.Expr:
    try:
        trees = [t for t in sqlglot.parse(text, read=DIALECT, error_level=ErrorLevel.RAISE) if t is not None]
    except (ParseError, TokenError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise Refusal(400, "invalid_sql", "statement", f"does not parse as Databricks SQL: {first[:300]}") from None
    if not trees:
        raise Refusal(400, "invalid_sql", "statement", "is empty")
    if len(trees) > 1:
        second = trees[1].sql(dialect=DIALECT, comments=False)[:80]
        raise _forbid(f"statement 2 ({second})", f"several statements in one request ({len(trees)}); send one")
    return trees[0]


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return type(node).__name__.upper()


def _name_of(node: exp.Expr) -> str:
    return node.sql(dialect=DIALECT, comments=False)[:200]


def _check_identifier(ident: exp.Expr, reference: str) -> str:
    if not isinstance(ident, exp.Identifier):
        raise _forbid(
            reference, f"{_name_of(ident)} is not a plain name (parameters and expressions cannot name tables)"
        )
    name = str(ident.this)
    if not _PLAIN.fullmatch(name):
        raise _forbid(reference, f"identifier {name!r} carries characters other than letters, digits, _ and -")
    return name.lower()


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _refused_function(name: str) -> bool:
    return name in REFUSED_FUNCTIONS or name.startswith(REFUSED_PREFIXES)


def _visible_ctes(node: exp.Expr) -> set[str]:
    """Names of the CTEs in scope at `node` (every WITH on the way up)."""
    names: set[str] = set()
    parent = node.parent
    while parent is not None:
        with_ = parent.args.get("with_") or parent.args.get("with")
        if isinstance(with_, exp.With):
            names |= {cte.alias_or_name.lower() for cte in with_.expressions}
        parent = parent.parent
    return names


def _check_table(table: exp.Table, catalog: str, ctes: set[str], real: list[tuple[str, str]]) -> None:
    reference = _name_of(table)
    if isinstance(table.this, exp.Func):
        name = _function_name(table.this)
        if name not in TABLE_FUNCTIONS:
            raise _forbid(reference, f"table function {name}() is refused (it reads files, streams, other catalogs "
                          "or names a table at run time)")  # fmt: skip
        return
    if isinstance(table.this, exp.Dot):
        raise _forbid(reference, "a name has at most three parts (catalog.schema.table)")
    parts = [p for p in (table.args.get("catalog"), table.args.get("db"), table.this) if p is not None]
    names = [_check_identifier(p, reference) for p in parts]
    if len(names) == 3 and names[0] != catalog:
        raise _forbid(reference, f"catalog {names[0]} is outside the tenant's catalog {catalog}")
    if len(names) >= 2:
        schema = names[-2]
        if schema in REFUSED_SCHEMAS or schema.startswith(CATALOG_PREFIX):
            raise _forbid(reference, f"schema {schema} names a catalog, cross-catalog metadata or a path format; "
                          f"only schemas of {catalog} are readable")  # fmt: skip
    if len(names) == 1 and names[0] in ctes:
        return  # a CTE of this statement
    real.append((names[-1], reference))


def _check_column(column: exp.Column, catalog: str) -> None:
    catalog_part = column.args.get("catalog")
    db_part = column.args.get("db")
    reference = _name_of(column)
    if catalog_part is not None and _check_identifier(catalog_part, reference) != catalog:
        raise _forbid(reference, f"column qualifier names catalog {catalog_part.name}, outside {catalog}")
    if db_part is not None:
        schema = _check_identifier(db_part, reference)
        if schema in REFUSED_SCHEMAS or (schema.startswith(CATALOG_PREFIX) and schema != catalog):
            raise _forbid(reference, f"column qualifier {schema} names another catalog or cross-catalog metadata")


def _check_function(node: exp.Func, catalog: str) -> None:
    name = _function_name(node)
    if _refused_function(name):
        raise _forbid(f"{name}()", "this function reads files, secrets, endpoints or other catalogs, runs code, "
                      "or names a table at run time")  # fmt: skip
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:  # a qualified call: cat.schema.fn(...)
        reference = _name_of(parent)
        names = [_check_identifier(q, reference) for q in _dotted(parent.this)]
        if len(names) >= 2 and names[-2] != catalog:
            raise _forbid(reference, f"function of catalog {names[-2]}, outside the tenant's catalog {catalog}")
        if names and (names[-1] in REFUSED_SCHEMAS or names[-1].startswith(CATALOG_PREFIX)):
            raise _forbid(reference, f"function qualifier {names[-1]} names another catalog or a system schema")


def _dotted(node: exp.Expr) -> list[exp.Expr]:
    """The parts of `a.b.c` (identifiers as sqlglot nests them in Dot and Column nodes)."""
    if isinstance(node, exp.Dot):
        return [*_dotted(node.this), *_dotted(node.expression)]
    if isinstance(node, exp.Column):
        return list(node.parts)
    return [node]


def check_schema(schema: str, *, catalog: str) -> str:
    """The request's current schema, under the same rules as a schema written in the SQL."""
    reference = f"schema {schema}"
    if not _PLAIN.fullmatch(schema):
        raise _forbid(reference, "a schema is a plain name (letters, digits, _ and -)")
    name = schema.lower()
    if name in REFUSED_SCHEMAS or name.startswith(CATALOG_PREFIX):
        raise _forbid(reference, f"names a catalog, cross-catalog metadata or a path format, not a schema of {catalog}")
    return name


def check(text: str, *, catalog: str, parameters: Mapping[str, object]) -> Checked:
    """The statement checked against the tenant's `catalog`, or `Refusal` naming what reaches outside it."""
    catalog = catalog.lower()
    tree = _parse(text)
    if not isinstance(tree, READ_ROOTS):
        raise _forbid(f"{_kind(tree)} statement", "only read statements (SELECT, WITH ... SELECT, VALUES) run here")
    real: list[tuple[str, str]] = []
    used: list[str] = []
    cte_names: set[str] = set()
    for node in tree.walk():
        if isinstance(node, WRITE_NODES):
            raise _forbid(f"{_kind(node)} in the statement", "only reads run here (no DDL, DML or commands)")
        if isinstance(node, exp.CTE):
            cte_names.add(node.alias_or_name.lower())
        elif isinstance(node, exp.Table):
            _check_table(node, catalog, _visible_ctes(node), real)
        elif isinstance(node, exp.Column):
            _check_column(node, catalog)
        elif isinstance(node, exp.Placeholder):
            name = str(node.this or "")
            if not name or name == "?":
                raise Refusal(400, "invalid_parameter", "?", "positional markers are not supported; use :name")
            if isinstance(node.parent, exp.Table):
                raise _forbid(f":{name}", "a parameter cannot name a table")
            used.append(name)
        elif isinstance(node, exp.Func):
            _check_function(node, catalog)
    for table_name, reference in real:
        if table_name in cte_names:
            raise _forbid(reference, f"CTE {table_name} shadows a table of the same name in this statement; "
                          "rename the CTE")  # fmt: skip
    missing = sorted(set(used) - set(parameters))
    if missing:
        raise Refusal(400, "invalid_parameter", f":{missing[0]}", "the statement uses it; give it in `parameters`")
    unused = sorted(set(parameters) - set(used))
    if unused:
        raise Refusal(400, "invalid_parameter", unused[0], "given in `parameters` but not used by the statement")
    try:
        statement = tree.sql(dialect=DIALECT, comments=False, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as err:
        raise Refusal(400, "invalid_sql", "statement", f"cannot be regenerated: {str(err).splitlines()[0]}") from None
    return Checked(statement, tuple(ref for _, ref in real), tuple(sorted(set(used))))


MEMO_ENTRIES = 2048
MEMO_MAX_CHARS = 8192


@functools.lru_cache(maxsize=MEMO_ENTRIES)
def _verdict(text: str, catalog: str, names: frozenset[str]) -> Checked | Refusal:
    try:
        return check(text, catalog=catalog, parameters=dict.fromkeys(names))
    except Refusal as refusal:
        return refusal


def check_memo(text: str, *, catalog: str, parameters: Mapping[str, object]) -> Checked:
    """`check`, answered from memory for a statement seen before (same text, catalog and parameter names)."""
    if len(text) > MEMO_MAX_CHARS:
        return check(text, catalog=catalog, parameters=parameters)
    verdict = _verdict(text, catalog.lower(), frozenset(parameters))
    if isinstance(verdict, Refusal):  # a fresh exception each time: a remembered one would carry old tracebacks
        raise Refusal(verdict.status, verdict.error, verdict.reference, verdict.why)
    return verdict
