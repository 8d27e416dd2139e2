"""One SQL session: runs statements for one principal with a current catalog and schema.

Statements Databricks has and DuckDB does not (catalog/schema/volume DDL, GRANT/REVOKE/SHOW GRANTS, USE,
SHOW, DESCRIBE, COPY INTO) are intercepted here and served by Unity Catalog or by dedicated code; everything
else is translated at the AST (`translate.py`), authorised against Unity Catalog grants, and executed by
DuckDB under the locks of the catalogs it touches.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
from sqlglot import exp

from apev_workspace.core.exceptions import (
    ApiError,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from apev_workspace.identity.models import Principal
from apev_workspace.sql import functions
from apev_workspace.sql import translate as t
from apev_workspace.sql.copy_into import copy_into
from apev_workspace.sql.engine import PLACEHOLDER, SYSTEM, Engine
from apev_workspace.sql.exceptions import SqlError, insufficient, unsupported
from apev_workspace.sql.types import to_string

if TYPE_CHECKING:
    from apev_workspace.core.store import Store
    from apev_workspace.unity_catalog.models import UnityCatalog

NAME = r"(?:`[^`]+`|[\w-]+)(?:\.(?:`[^`]+`|[\w-]+)){0,2}"
_COMMENT = r"(?:\s+COMMENT\s+'(?P<comment>(?:[^']|'')*)')?"
_LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*\n|/\*.*?\*/))*\s*", re.DOTALL)


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(r"^\s*" + pattern + r"\s*$", re.IGNORECASE | re.DOTALL)


PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("use_catalog", _re(rf"USE\s+CATALOG\s+(?P<name>{NAME})")),
    ("use_schema", _re(rf"USE\s+(?:SCHEMA\s+|DATABASE\s+)?(?P<name>{NAME})")),
    ("create_catalog", _re(rf"CREATE\s+CATALOG\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{NAME}){_COMMENT}")),
    (
        "drop_catalog",
        _re(rf"DROP\s+CATALOG\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{NAME})(?:\s+(?P<mode>CASCADE|RESTRICT))?"),
    ),
    ("create_schema", _re(rf"CREATE\s+(?:SCHEMA|DATABASE)\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{NAME}){_COMMENT}")),
    (
        "drop_schema",
        _re(rf"DROP\s+(?:SCHEMA|DATABASE)\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{NAME})(?:\s+(?P<mode>CASCADE|RESTRICT))?"),
    ),
    ("create_volume", _re(rf"CREATE\s+VOLUME\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?(?P<name>{NAME}){_COMMENT}")),
    ("drop_volume", _re(rf"DROP\s+VOLUME\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{NAME})")),
    (
        "grant",
        _re(
            rf"(?P<verb>GRANT|REVOKE)\s+(?P<privs>.+?)\s+ON\s+(?P<kind>CATALOG|SCHEMA|DATABASE|TABLE|VIEW|VOLUME)\s+(?P<name>{NAME})\s+(?:TO|FROM)\s+(?P<principal>`[^`]+`|\S+)"
        ),
    ),
    (
        "show_grants",
        _re(
            rf"SHOW\s+GRANTS(?:\s+(?P<principal>`[^`]+`|(?!ON\b)\S+))?\s+ON\s+(?P<kind>CATALOG|SCHEMA|DATABASE|TABLE|VIEW|VOLUME)\s+(?P<name>{NAME})"
        ),
    ),
    ("show_catalogs", _re(r"SHOW\s+CATALOGS")),
    ("show_schemas", _re(rf"SHOW\s+(?:SCHEMAS|DATABASES)(?:\s+(?:IN|FROM)\s+(?P<name>{NAME}))?")),
    ("show_tables", _re(rf"SHOW\s+TABLES(?:\s+(?:IN|FROM)\s+(?P<name>{NAME}))?")),
    ("describe", _re(rf"DESC(?:RIBE)?\s+(?:TABLE\s+)?(?:EXTENDED\s+)?(?P<name>{NAME})")),
    (
        "set_mask",
        _re(
            rf"ALTER\s+TABLE\s+(?P<name>{NAME})\s+ALTER\s+COLUMN\s+(?P<column>`[^`]+`|\w+)\s+"
            rf"(?:(?P<drop>DROP\s+MASK)|SET\s+MASK\s+(?P<fn>{NAME})(?:\s+USING\s+COLUMNS\s*\((?P<using>[^)]*)\))?)"
        ),
    ),
    ("set_properties", _re(rf"ALTER\s+TABLE\s+(?P<name>{NAME})\s+SET\s+TBLPROPERTIES\s*(?P<props>\(.*\))")),
    ("drop_function", _re(rf"DROP\s+(?:TEMPORARY\s+)?FUNCTION\s+(?P<ie>IF\s+EXISTS\s+)?(?P<name>{NAME})")),
    ("copy_into", _re(rf"COPY\s+INTO\s+(?P<name>{NAME})\s+FROM\s+(?P<source>.+)")),
    ("noop", _re(r"(?:OPTIMIZE|VACUUM|ANALYZE|REFRESH|SET|RESET|CACHE|UNCACHE)\b.*")),
]

DML_COLUMNS = {
    exp.Insert: ["num_affected_rows", "num_inserted_rows"],
    exp.Merge: ["num_affected_rows"],
    exp.Update: ["num_affected_rows"],
    exp.Delete: ["num_affected_rows"],
}


def unquote(name: str) -> list[str]:
    return [p.strip("`") for p in re.findall(r"`[^`]+`|[^.]+", name)]


@dataclass
class Result:
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # name, type_text, type_name
    rows: list[list[str | None]] = field(default_factory=list)

    @classmethod
    def strings(cls, names: list[str], rows: list[list[Any]]) -> Result:
        return cls([(n, "STRING", "STRING") for n in names], [[to_string(v) for v in row] for row in rows])


@dataclass
class Backend:
    uc: UnityCatalog
    engine: Engine
    store: Store


class Session:
    def __init__(self, backend: Backend, who: Principal, catalog: str | None, schema: str | None) -> None:
        self.backend = backend
        self.uc = backend.uc
        self.engine = backend.engine
        self.who = who
        self.catalog = catalog
        self.schema = schema or ("default" if catalog else None)
        self.cancelled = False
        self._cursor: Any = None
        self._done = False

    # ------------------------------------------------------------------ entry points
    def run_script(self, text: str, params: dict[str, tuple[Any, str]] | None = None) -> Result:
        statements = t.split_statements(text)
        if not statements:
            raise SqlError("PARSE_EMPTY_STATEMENT", "Syntax error, unexpected empty statement.", sqlstate="42617")
        result = Result()
        for statement in statements:
            if self.cancelled:
                raise SqlError("OPERATION_CANCELED", "The statement was canceled.", error_code="CANCELLED")
            result = self.run(statement, params or {})
        return result

    def cancel(self) -> None:
        self.cancelled = True
        # DuckDB's interrupt only stops a query already running: a cancel that lands between the cursor's
        # preparation and `execute` would be lost. Keep interrupting until the statement has ended.
        threading.Thread(target=self._interrupt_until_done, name="apev-sql-cancel", daemon=True).start()

    def _interrupt_until_done(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._done:
            cur = self._cursor
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.interrupt()
            time.sleep(0.02)

    def run(self, text: str, params: dict[str, tuple[Any, str]]) -> Result:
        body = _LEADING_COMMENTS.sub("", text, count=1)
        self._done = False
        try:
            for kind, pattern in PATTERNS:
                match = pattern.match(body)
                if match:
                    handler: Callable[[re.Match[str], Any], Result] = getattr(self, f"_{kind}")
                    return handler(match, params)
            return self._translated(body, params)
        except ApiError as err:
            raise _from_api(err) from None
        except duckdb.InterruptException:
            raise SqlError("OPERATION_CANCELED", "The statement was canceled.", error_code="CANCELLED") from None
        except duckdb.Error as err:
            raise _from_duckdb(err) from None
        finally:
            self._done = True
            cur, self._cursor = self._cursor, None
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()

    # ------------------------------------------------------------------ names
    def qualify(self, name: str, parts: int) -> str:
        """`name` with the current catalog (and schema) in front, up to `parts` parts."""
        names = unquote(name)
        if len(names) > parts:
            raise SqlError("INVALID_IDENTIFIER", f"The name {name} has too many parts.")
        missing = parts - len(names)
        prefix = [self._need_catalog(), *([self._need_schema()] if missing == 2 else [])] if missing else []
        return ".".join([*prefix, *names])

    def _need_catalog(self) -> str:
        if not self.catalog:
            raise SqlError("NO_CURRENT_CATALOG", "No current catalog: pass catalog or use qualified names.")
        return self.catalog

    def _need_schema(self) -> str:
        if not self.schema:
            raise SqlError("NO_CURRENT_SCHEMA", "No current schema: pass schema or use qualified names.")
        return self.schema

    # ------------------------------------------------------------------ intercepted statements
    def _use_catalog(self, m: re.Match[str], _: Any) -> Result:
        name = unquote(m["name"])[0]
        self.uc.get_catalog(self.who, name)
        self.uc.authorize(self.who, "CATALOG", name)
        self.catalog, self.schema = name, "default"
        return Result()

    def _use_schema(self, m: re.Match[str], _: Any) -> Result:
        names = unquote(m["name"])
        full = ".".join(names) if len(names) == 2 else f"{self._need_catalog()}.{names[0]}"
        self.uc.get_schema(self.who, full)
        self.uc.authorize(self.who, "SCHEMA", full)
        self.catalog, self.schema = full.split(".")
        return Result()

    def _create_catalog(self, m: re.Match[str], _: Any) -> Result:
        comment = (m["comment"] or "").replace("''", "'") or None
        self.uc.create_catalog(self.who, unquote(m["name"])[0], {"comment": comment}, if_not_exists=bool(m["ine"]))
        return Result()

    def _drop_catalog(self, m: re.Match[str], _: Any) -> Result:
        name = unquote(m["name"])[0]
        if m["ie"] and name not in self.uc.catalogs:
            return Result()
        self.uc.delete_catalog(self.who, name, force=(m["mode"] or "").upper() == "CASCADE")
        return Result()

    def _create_schema(self, m: re.Match[str], _: Any) -> Result:
        catalog, schema = self.qualify(m["name"], 2).split(".")
        comment = (m["comment"] or "").replace("''", "'") or None
        self.uc.create_schema(self.who, catalog, schema, {"comment": comment}, if_not_exists=bool(m["ine"]))
        return Result()

    def _drop_schema(self, m: re.Match[str], _: Any) -> Result:
        full = self.qualify(m["name"], 2)
        if m["ie"] and full not in self.uc.schemas:
            return Result()
        self.uc.delete_schema(self.who, full, force=(m["mode"] or "").upper() == "CASCADE")
        return Result()

    def _create_volume(self, m: re.Match[str], _: Any) -> Result:
        catalog, schema, name = self.qualify(m["name"], 3).split(".")
        comment = (m["comment"] or "").replace("''", "'") or None
        body = {"catalog_name": catalog, "schema_name": schema, "name": name, "comment": comment}
        self.uc.create_volume(self.who, body, if_not_exists=bool(m["ine"]))
        return Result()

    def _drop_volume(self, m: re.Match[str], _: Any) -> Result:
        full = self.qualify(m["name"], 3)
        if m["ie"] and full not in self.uc.volumes:
            return Result()
        self.uc.delete_volume(self.who, full)
        return Result()

    def _securable(self, kind: str, name: str) -> tuple[str, str]:
        kind = {"DATABASE": "SCHEMA", "VIEW": "TABLE"}.get(kind.upper(), kind.upper())
        parts = {"CATALOG": 1, "SCHEMA": 2}.get(kind, 3)
        return kind, self.qualify(name, parts)

    def _grant(self, m: re.Match[str], _: Any) -> Result:
        kind, full = self._securable(m["kind"], m["name"])
        privileges = [p.strip().upper().replace(" ", "_") for p in m["privs"].split(",")]
        privileges = ["ALL_PRIVILEGES" if p in ("ALL", "ALL_PRIVILEGES") else p for p in privileges]
        verb = "add" if m["verb"].upper() == "GRANT" else "remove"
        self.uc.update_grants(self.who, kind, full, [{"principal": m["principal"].strip("`"), verb: privileges}])
        return Result()

    def _show_grants(self, m: re.Match[str], _: Any) -> Result:
        kind, full = self._securable(m["kind"], m["name"])
        principal = m["principal"].strip("`") if m["principal"] else None
        rows = [
            [item["principal"], priv.replace("_", " "), kind, full]
            for item in self.uc.get_grants(self.who, kind, full, principal)
            for priv in item["privileges"]
        ]
        return Result.strings(["Principal", "ActionType", "ObjectType", "ObjectKey"], rows)

    def _show_catalogs(self, m: re.Match[str], _: Any) -> Result:
        return Result.strings(["catalog"], [[c["name"]] for c in self.uc.list_catalogs(self.who)])

    def _show_schemas(self, m: re.Match[str], _: Any) -> Result:
        catalog = unquote(m["name"])[0] if m["name"] else self._need_catalog()
        return Result.strings(["databaseName"], [[s["name"]] for s in self.uc.list_schemas(self.who, catalog)])

    def _show_tables(self, m: re.Match[str], _: Any) -> Result:
        full = self.qualify(m["name"], 2) if m["name"] else f"{self._need_catalog()}.{self._need_schema()}"
        catalog, schema = full.split(".")
        tables = self.uc.list_tables(self.who, catalog, schema)
        return Result.strings(["database", "tableName", "isTemporary"], [[schema, x["name"], False] for x in tables])

    def _describe(self, m: re.Match[str], _: Any) -> Result:
        full = self.qualify(m["name"], 3)
        if full.split(".")[0] == SYSTEM:  # system tables have no Unity Catalog metadata here: ask the engine
            described = self._translated(f"SELECT * FROM {full} LIMIT 0", {})  # noqa: S608 (parsed again)
            rows = [[name, text.lower(), None] for name, text, _ in described.columns]
            return Result.strings(["col_name", "data_type", "comment"], rows)
        table = self.uc.get_table(self.who, full)
        rows = [[c["name"], c["type_text"], c.get("comment")] for c in table["columns"]]
        return Result.strings(["col_name", "data_type", "comment"], rows)

    def _copy_into(self, m: re.Match[str], params: Any) -> Result:
        full = self.qualify(m["name"], 3)
        self._check_catalog(full.split(".")[0])
        names, rows = copy_into(self, full, m["source"], params)
        return Result([(n, "BIGINT", "LONG") for n in names], [[to_string(v) for v in r] for r in rows])

    def _set_mask(self, m: re.Match[str], _: Any) -> Result:
        using = [u.strip().strip("`") for u in (m["using"] or "").split(",") if u.strip()]
        functions.set_mask(self, m["name"], m["column"].strip("`"), None if m["drop"] else m["fn"], using)
        return Result()

    def _set_properties(self, m: re.Match[str], _: Any) -> Result:
        """`ALTER TABLE t SET TBLPROPERTIES (k = v, ...)`: Unity Catalog metadata (owner or MANAGE), e.g. the
        Change Data Feed switch a Delta Sync vector index needs."""
        full = self.qualify(m["name"], 3)
        self.uc.get_table(self.who, full)
        if not (self.who.is_admin or self.uc.holds(self.who, "TABLE", full, "MANAGE")):
            raise insufficient(f"User {self.who.name} is not an owner of Table '{full}'.")
        try:
            tree = sqlglot.parse_one(f"ALTER TABLE x SET TBLPROPERTIES {m['props']}", read="databricks")
            props = [p for p in tree.find_all(exp.Property) if type(p) is exp.Property]
        except sqlglot.errors.ParseError as err:
            raise SqlError("PARSE_SYNTAX_ERROR", f"Invalid TBLPROPERTIES: {err}") from None
        self.uc.set_properties(full, t.property_items(list(props)))
        return Result()

    def _drop_function(self, m: re.Match[str], _: Any) -> Result:
        functions.drop_function(self, m["name"], bool(m["ie"]))
        return Result()

    def _noop(self, m: re.Match[str], _: Any) -> Result:
        return Result()

    # ------------------------------------------------------------------ translated statements
    def _check_catalog(self, catalog: str) -> None:
        if catalog != SYSTEM and catalog not in self.uc.catalogs:
            raise SqlError("NO_SUCH_CATALOG_EXCEPTION", f"Catalog '{catalog}' was not found.", sqlstate="42704")

    def authorize(self, analysis: t.Analysis, tree: exp.Expr) -> None:
        for ref in analysis.refs:
            self._check_catalog(ref.catalog)
            if ref.catalog == SYSTEM:
                if ref.write:
                    raise insufficient("The system catalog is read-only.")
                # Admins read system tables; others need USE_SCHEMA and SELECT granted on them (or their schema).
                try:
                    self.uc.authorize(self.who, "TABLE", ref.full_name, "SELECT")
                except PermissionDenied as exc:
                    raise insufficient(str(exc)) from None
                continue
            if ref is analysis.created:
                if f"{ref.catalog}.{ref.schema}" not in self.uc.schemas:
                    raise SqlError(
                        "SCHEMA_NOT_FOUND",
                        f"The schema `{ref.catalog}`.`{ref.schema}` cannot be found.",
                        sqlstate="42704",
                    )
                self.uc.authorize(self.who, "SCHEMA", f"{ref.catalog}.{ref.schema}", "CREATE_TABLE")
                if tree.args.get("replace") and ref.full_name in self.uc.tables:
                    self.uc.authorize(self.who, "TABLE", ref.full_name, "MODIFY")
            elif any(ref is d for d in analysis.dropped):
                if not (self.who.is_admin or self.uc.holds(self.who, "TABLE", ref.full_name, "MANAGE")):
                    raise insufficient(f"User {self.who.name} is not an owner of Table '{ref.full_name}'.")
            else:
                self.uc.authorize(self.who, "TABLE", ref.full_name, "MODIFY" if ref.write else "SELECT")

    def column_masks(self, full_name: str) -> dict[str, dict[str, Any]]:
        table = self.uc.tables.get(full_name) or {}
        masks: dict[str, dict[str, Any]] = table.get("column_masks") or {}
        return masks

    def prepare_cursor(self) -> Any:
        cur = self.engine.cursor()
        user = exp.Literal.string(self.who.name).sql(dialect="duckdb")
        groups = exp.Array(expressions=[exp.Literal.string(g) for g in sorted(self.who.groups)]).sql(dialect="duckdb")
        cur.execute(f"SET VARIABLE {t.USER_VAR} = {user}")
        cur.execute(f"SET VARIABLE {t.GROUPS_VAR} = CAST({groups} AS VARCHAR[])")
        self._cursor = cur
        if self.cancelled:
            raise SqlError("OPERATION_CANCELED", "The statement was canceled.", error_code="CANCELLED")
        return cur

    def _translated(self, text: str, params: dict[str, tuple[Any, str]]) -> Result:
        tree = t.parse(text)
        if isinstance(tree, exp.Command):
            raise unsupported(f"The statement {tree.name.upper()} {str(tree.expression or '')[:40].strip()}")
        allowed = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.TruncateTable)
        if not isinstance(tree, (*allowed, exp.Alter)):
            raise unsupported(f"The statement {type(tree).__name__.upper()}")
        meta: dict[str, Any] = {}
        if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() == "FUNCTION":
            bound = t.bind_parameters(tree, params)
            assert isinstance(bound, exp.Create)
            functions.create_function(self, bound)
            return Result()
        if isinstance(tree, exp.Create | exp.Drop):
            kind = str(tree.args.get("kind") or "").upper()
            if kind not in ("TABLE", "VIEW"):
                raise unsupported(f"{type(tree).__name__.upper()} {kind}")
            if isinstance(tree, exp.Create) and kind == "TABLE":
                meta = t.strip_table_properties(tree)
                if isinstance(tree.this, exp.Table) and tree.expression is None:
                    # `CREATE TABLE x` without columns (a COPY INTO ... mergeSchema target): DuckDB needs one
                    column = exp.ColumnDef(this=exp.to_identifier(PLACEHOLDER), kind=exp.DataType.build("BOOLEAN"))
                    tree.set("this", exp.Schema(this=tree.this, expressions=[column]))
            if isinstance(tree, exp.Create) and kind == "VIEW" and tree.expression is not None:
                meta["view_definition"] = tree.expression.sql(dialect="databricks")
        tree = t.bind_parameters(tree, params)
        analysis = t.qualify(tree, self.catalog, self.schema)
        self.authorize(analysis, tree)
        tree = functions.apply_masks(tree, self.column_masks)
        tree = t.rewrite_functions(tree)
        overwrite = isinstance(tree, exp.Insert) and bool(tree.args.get("overwrite"))
        if overwrite:
            if tree.args.get("partition"):
                raise unsupported("INSERT OVERWRITE ... PARTITION")
            tree.set("overwrite", False)
            # the source is read before the target is emptied, as Delta reads the version before the write
            source_sql = t.to_duckdb(tree.expression)
            tree.set("expression", exp.select("*").from_("apev_overwrite_source"))
        sql = t.to_duckdb(tree)
        with self.engine.locked(analysis.catalogs):
            cur = self.prepare_cursor()
            for ref in analysis.refs:
                if ref.catalog == SYSTEM and not self.engine.load_system_table(cur, ref.schema, ref.name):
                    raise SqlError(
                        "TABLE_OR_VIEW_NOT_FOUND",
                        f"The table or view `system`.`{ref.schema}`.`{ref.name}` "
                        "cannot be found (no provider is registered for it).",
                        sqlstate="42P01",
                    )
            if overwrite:
                target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
                cur.execute("BEGIN TRANSACTION")
                try:
                    cur.execute(f"CREATE TEMP TABLE apev_overwrite_source AS {source_sql}")
                    cur.execute(f"DELETE FROM {target.sql(dialect='duckdb')}")  # noqa: S608
                    cur.execute(sql)
                    rows = cur.fetchall()
                    cur.execute("DROP TABLE apev_overwrite_source")
                    cur.execute("COMMIT")
                except Exception:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                    raise
                description = cur.description
            else:
                cur.execute(sql)
                description = cur.description
                rows = cur.fetchall() if description else []
        self._after(tree, analysis, meta)
        for dml, names in DML_COLUMNS.items():
            if isinstance(tree, dml):
                count = rows[0][0] if rows else 0
                return Result([(n, "BIGINT", "LONG") for n in names], [[str(count)] * len(names)])
        if isinstance(tree, exp.Create | exp.Drop | exp.Alter | exp.TruncateTable):
            return Result()
        return _result(description, rows)

    def _after(self, tree: exp.Expr, analysis: t.Analysis, meta: dict[str, Any]) -> None:
        """Unity Catalog metadata follows what SQL created or dropped."""
        if analysis.created is not None:
            kind = "VIEW" if str(tree.args.get("kind")).upper() == "VIEW" else "MANAGED"
            self.uc.register_table(self.who, analysis.created.full_name, kind, meta)
            self.backend.store.delete("sql_copy_into", analysis.created.full_name)
        for dropped in analysis.dropped:
            self.uc.forget_table(dropped.full_name)
            self.backend.store.delete("sql_copy_into", dropped.full_name)


def _result(description: Any, rows: list[Any]) -> Result:
    from apev_workspace.sql.types import databricks_type

    columns = []
    for name, kind, *_ in description or []:
        text, type_name = databricks_type(kind)
        columns.append((name, text, type_name))
    return Result(columns, [[to_string(v) for v in row] for row in rows])


def _from_api(err: ApiError) -> SqlError:
    if isinstance(err, PermissionDenied):
        return insufficient(err.message)
    if isinstance(err, ResourceDoesNotExist):
        return SqlError("NOT_FOUND", err.message, sqlstate="42704")
    if isinstance(err, ResourceAlreadyExists):
        return SqlError("ALREADY_EXISTS", err.message, sqlstate="42710")
    return SqlError("INVALID_PARAMETER_VALUE", err.message, sqlstate="22023")


def _from_duckdb(err: duckdb.Error) -> SqlError:
    message = str(err).replace("apev_system", "system")
    first = message.split("\n")[0]
    if isinstance(err, duckdb.CatalogException):
        if "does not exist" in first and ("Table" in first or "View" in first):
            return SqlError("TABLE_OR_VIEW_NOT_FOUND", first, sqlstate="42P01")
        if "already exists" in first:
            return SqlError("TABLE_OR_VIEW_ALREADY_EXISTS", first, sqlstate="42P07")
        return SqlError("SCHEMA_NOT_FOUND" if "Schema" in first else "ANALYSIS_ERROR", first, sqlstate="42704")
    if isinstance(err, duckdb.BinderException):
        return SqlError("UNRESOLVED_COLUMN", first, sqlstate="42703")
    if isinstance(err, duckdb.ParserException):
        return SqlError("PARSE_SYNTAX_ERROR", first, sqlstate="42601")
    if isinstance(err, duckdb.ConversionException | duckdb.InvalidInputException):
        return SqlError("CAST_INVALID_INPUT", first, sqlstate="22018")
    if isinstance(err, duckdb.ConstraintException):
        return SqlError("CONSTRAINT_VIOLATION", first, sqlstate="23000")
    if isinstance(err, duckdb.OutOfRangeException):
        return SqlError("ARITHMETIC_OVERFLOW", first, sqlstate="22003")
    if isinstance(err, duckdb.TransactionException):
        return SqlError("CONCURRENT_UPDATE", first, error_code="ABORTED", sqlstate="40000")
    return SqlError("INTERNAL_ERROR", first, error_code="INTERNAL_ERROR", sqlstate="XX000")
