"""Databricks SQL to DuckDB at the AST (sqlglot), and what a statement reads and writes.

Translation steps on one parsed statement: named parameters (`:name`) become typed literals (never text
interpolation); table names are qualified with the session's catalog and schema and mapped to DuckDB
database names; `current_user()` and `is_account_group_member()` read per-connection DuckDB variables (so
views evaluate them for whoever queries, as row filters and column masks need); Delta-only table
properties are stripped and kept as metadata. Emission uses `unsupported_level=RAISE`, so anything sqlglot
cannot express in DuckDB fails with a message naming it instead of being silently dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError
from sqlglot.tokenizer_core import TokenType

from apev_workspace.sql.exceptions import SqlError, unsupported

logging.getLogger("sqlglot").setLevel(logging.ERROR)
DATABRICKS = Dialect.get_or_raise("databricks")
RESERVED_DUCK = {"system", "temp", "main", "memory"}
USER_VAR, GROUPS_VAR = "apev_user", "apev_groups"


def duck_catalog(catalog: str) -> str:
    """DuckDB database name of a catalog; DuckDB reserves `system`, `temp`, `main` and `memory`."""
    return f"apev_{catalog}" if catalog.lower() in RESERVED_DUCK else catalog


def split_statements(text: str) -> list[str]:
    """The statements of a script, split at top-level semicolons (strings and comments respected)."""
    try:
        tokens = DATABRICKS.tokenize(text)
    except Exception as err:
        raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error: {err}", sqlstate="42601") from None
    out, start = [], 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            out.append(text[start : token.start])
            start = token.end + 1
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def parse(text: str) -> exp.Expr:
    try:
        tree = sqlglot.parse_one(text, read="databricks")
    except ParseError as err:
        raise SqlError("PARSE_SYNTAX_ERROR", f"Syntax error: {err}", sqlstate="42601") from None
    return tree


def bind_parameters(tree: exp.Expr, params: dict[str, tuple[Any, str]]) -> exp.Expr:
    """Replace `:name` markers with `CAST('value' AS type)` literals."""

    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Placeholder):
            return node
        name = node.name
        if not name or name == "?":
            raise SqlError("UNSUPPORTED_FEATURE", "Positional parameters (?) are not supported; use :name.")
        if name not in params:
            raise SqlError(
                "UNBOUND_SQL_PARAMETER",
                f"Found the unbound parameter: {name}. Please fix `args` and provide a "
                f"mapping of the parameter to a SQL literal.",
                sqlstate="42P02",
            )
        value, kind = params[name]
        try:
            data_type = exp.DataType.build(kind or "STRING", dialect="databricks")
        except (ParseError, ValueError):
            raise SqlError("INVALID_PARAMETER_VALUE", f"Unknown type {kind!r} of parameter {name}.") from None
        literal = exp.null() if value is None else exp.Literal.string(str(value))
        return exp.Cast(this=literal, to=data_type)

    return tree.transform(replace)


@dataclass
class Ref:
    catalog: str
    schema: str
    name: str
    write: bool

    @property
    def full_name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.name}"


@dataclass
class Analysis:
    refs: list[Ref] = field(default_factory=list)
    created: Ref | None = None  # the table or view a CREATE makes
    dropped: list[Ref] = field(default_factory=list)

    @property
    def catalogs(self) -> set[str]:
        return {r.catalog for r in self.refs}


def _targets(tree: exp.Expr) -> set[int]:
    """ids of the Table nodes a statement writes to (or drops)."""
    nodes: list[Any] = []
    if isinstance(tree, exp.Drop):
        nodes = list(tree.args.get("tables") or [tree.this])
    elif isinstance(tree, exp.TruncateTable):
        nodes = list(tree.expressions)
    elif isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.Create | exp.Alter):
        nodes = [tree.this]
    nodes = [n.this if isinstance(n, exp.Schema) else n for n in nodes]
    return {id(n) for n in nodes if isinstance(n, exp.Table)}


def qualify(tree: exp.Expr, catalog: str | None, schema: str | None) -> Analysis:
    """Fill in catalog and schema of every table name, map catalogs to DuckDB names, and list references."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    targets = _targets(tree)
    analysis = Analysis()
    if version := tree.find(exp.Version):  # Delta time travel: DuckDB tables keep no history
        raise unsupported(f"Time travel ({version.name} {version.text('kind')} ...)")
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.this, exp.Func):
            # DuckDB's own table functions (read_csv, duckdb_tables, query, ...) would bypass Unity Catalog
            name = (table.this.name if isinstance(table.this, exp.Anonymous) else table.this.key).lower()
            if name not in TABLE_FUNCTIONS:
                raise unsupported(f"The table function {name}()")
            _range_columns(table)
            continue
        if table.db.lower() in _FILE_FORMATS and table.this.name.startswith("/"):
            raise unsupported(f"Querying files directly ({table.sql(dialect='databricks')}); use COPY INTO")
        if not table.name:
            continue
        if not table.db and table.name.lower() in ctes:
            continue
        cat = table.catalog or catalog
        sch = table.db or schema
        if not cat or not sch:
            raise SqlError(
                "TABLE_OR_VIEW_NOT_FOUND",
                f"The table or view `{table.name}` cannot be found: no current catalog/schema is set "
                "(pass catalog and schema, or use three-part names).",
                sqlstate="42P01",
            )
        ref = Ref(cat, sch, table.name, id(table) in targets)
        analysis.refs.append(ref)
        table.set("catalog", exp.to_identifier(duck_catalog(cat)))
        table.set("db", exp.to_identifier(sch))
        if id(table) in targets:
            if isinstance(tree, exp.Create):
                analysis.created = ref
            elif isinstance(tree, exp.Drop):
                analysis.dropped.append(ref)
    return analysis


TABLE_FUNCTIONS = {"range", "explode", "explode_outer", "posexplode", "inline", "stack", "unnest", "generate_series"}
_FILE_FORMATS = {"json", "csv", "parquet", "text", "binaryfile", "delta", "avro", "orc"}


def _range_columns(table: exp.Table) -> None:
    """Databricks' `range(...)` table function names its column `id`; DuckDB's names it `range`."""
    if not (isinstance(table.this, exp.Anonymous) and table.this.name.lower() == "range"):
        return
    alias = table.args.get("alias")
    if alias is None:
        table.set("alias", exp.TableAlias(this=exp.to_identifier("range"), columns=[exp.to_identifier("id")]))
    elif not alias.columns:
        alias.set("columns", [exp.to_identifier("id")])


def rewrite_functions(tree: exp.Expr) -> exp.Expr:
    """current_user() and is_account_group_member('g') answer for the connection's principal."""

    def replace(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.CurrentUser) or (
            isinstance(node, exp.Anonymous) and node.name.lower() in ("session_user", "current_user")
        ):
            return exp.func("getvariable", exp.Literal.string(USER_VAR))
        if isinstance(node, exp.Anonymous) and node.name.lower() in ("is_account_group_member", "is_member"):
            if len(node.expressions) != 1:
                raise SqlError("WRONG_NUM_ARGS", f"{node.name} takes exactly one argument.", sqlstate="42605")
            groups = exp.func("getvariable", exp.Literal.string(GROUPS_VAR))
            return exp.func("list_contains", groups, node.expressions[0])
        return node

    return tree.transform(replace)


def property_items(props: list[exp.Expr]) -> dict[str, str]:
    """TBLPROPERTIES as strings: dotted keys kept whole (`delta.enableChangeDataFeed`), booleans `true`/`false`."""
    out: dict[str, str] = {}
    for prop in props:
        key, value = prop.this, prop.args.get("value")
        name = key.name if isinstance(key, exp.Literal | exp.Identifier) else key.sql(dialect="databricks")
        if isinstance(value, exp.Boolean):
            text = "true" if value.this else "false"
        elif isinstance(value, exp.Literal):
            text = value.name
        else:
            text = "" if value is None else value.sql(dialect="databricks")
        out[name] = text
    return out


def strip_table_properties(tree: exp.Create) -> dict[str, Any]:
    """Drop what DuckDB has no use for (USING DELTA, PARTITIONED BY, COMMENT, TBLPROPERTIES, column comments)
    and return it as Unity Catalog metadata."""
    meta: dict[str, Any] = {"properties": {}}
    props = tree.args.get("properties")
    if isinstance(props, exp.Properties):
        keep = []
        for prop in props.expressions:
            if isinstance(prop, exp.FileFormatProperty):
                fmt = prop.name.upper()
                if fmt not in ("DELTA", ""):
                    raise unsupported(f"CREATE TABLE ... USING {fmt}")
            elif isinstance(prop, exp.PartitionedByProperty):
                meta["partition_columns"] = [e.name for e in prop.this.expressions]
            elif isinstance(prop, exp.SchemaCommentProperty):
                meta["comment"] = prop.this.name
            elif isinstance(prop, exp.Property) and type(prop) is exp.Property:
                meta["properties"] |= property_items([prop])
            elif isinstance(prop, exp.ClusteredByProperty | exp.Cluster):
                continue
            elif isinstance(prop, exp.LocationProperty):
                raise unsupported("CREATE TABLE ... LOCATION (external tables)")
            else:
                keep.append(prop)
        if keep:
            props.set("expressions", keep)
        else:
            tree.set("properties", None)
    for constraint in list(tree.find_all(exp.ColumnConstraint)):
        if isinstance(constraint.kind, exp.CommentColumnConstraint):
            constraint.pop()
    return meta


def to_duckdb(tree: exp.Expr) -> str:
    try:
        return tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as err:
        raise unsupported(f"This construct ({str(err).splitlines()[0]})") from None
