"""SQL functions and column masks, as Unity Catalog has them.

`CREATE [OR REPLACE] FUNCTION c.s.f(p T, ...) RETURNS T RETURN <expression>` becomes a DuckDB macro in the
catalog's database file (so it persists with the tables) whose body reads the per-connection principal
variables: `current_user()` and `is_account_group_member()` inside it answer for whoever runs the statement.
Functions that read tables (`RETURN SELECT ...`) and table functions (`RETURNS TABLE`) are refused.

`ALTER TABLE t ALTER COLUMN c SET MASK f [USING COLUMNS (a, ...)]` records the mask in the table's Unity
Catalog metadata; every statement that *reads* the table then sees `f(c, a, ...)` in place of `c` (the table
is replaced by `(SELECT * REPLACE (f(c, ...) AS c) FROM t)`), while writes (INSERT, MERGE, UPDATE targets)
go to the stored values, as on Databricks. A view created over a masked table keeps the masks it saw at
creation (they are inlined into its definition).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from apev_workspace.sql import translate as t
from apev_workspace.sql.engine import quote
from apev_workspace.sql.exceptions import SqlError, insufficient, unsupported

if TYPE_CHECKING:
    from apev_workspace.sql.session import Session

KIND = "uc_function"


def _duck_name(full_name: str) -> str:
    catalog, schema, name = full_name.split(".")
    return f"{quote(t.duck_catalog(catalog))}.{quote(schema)}.{quote(name)}"


def _uc_catalog(duck: str) -> str:
    """Unity Catalog name of a DuckDB database name (the reverse of `duck_catalog`)."""
    if duck.startswith("apev_") and duck[5:].lower() in t.RESERVED_DUCK:
        return duck[5:]
    return duck


def get_function(session: Session, full_name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = session.backend.store.load(KIND).get(full_name)
    return found


def create_function(session: Session, tree: exp.Create) -> None:
    udf = tree.this
    if not isinstance(udf, exp.UserDefinedFunction) or not isinstance(udf.this, exp.Table):
        raise unsupported("This CREATE FUNCTION form")
    name = udf.this
    full_name = session.qualify(".".join(p.name for p in name.parts), 3)
    catalog, schema, _ = full_name.split(".")
    session._check_catalog(catalog)
    if f"{catalog}.{schema}" not in session.uc.schemas:
        raise SqlError("SCHEMA_NOT_FOUND", f"The schema `{catalog}`.`{schema}` cannot be found.", sqlstate="42704")
    session.uc.authorize(session.who, "SCHEMA", f"{catalog}.{schema}", "CREATE_FUNCTION")
    props = tree.args.get("properties")
    returns = next((p for p in (props.expressions if props else []) if isinstance(p, exp.ReturnsProperty)), None)
    if returns is None or returns.args.get("is_table") or not isinstance(returns.this, exp.DataType):
        raise unsupported("CREATE FUNCTION without a scalar RETURNS type")
    body = tree.expression.this if isinstance(tree.expression, exp.Return) else tree.expression
    if not isinstance(body, exp.Expr) or isinstance(body, exp.Query) or body.find(exp.Table, exp.Query):
        raise unsupported("SQL functions that read tables (RETURN SELECT ...)")
    existing = get_function(session, full_name)
    if existing is not None and not tree.args.get("replace"):
        if tree.args.get("exists"):
            return
        raise SqlError("ROUTINE_ALREADY_EXISTS", f"The routine `{full_name}` already exists.", sqlstate="42723")
    params = [(p.name, p.args["kind"].sql(dialect="databricks")) for p in udf.expressions]
    returns_type = returns.this.sql(dialect="databricks")
    definition = body.sql(dialect="databricks")
    duck_body = t.to_duckdb(exp.Cast(this=t.rewrite_functions(body.copy()), to=returns.this.copy()))
    macro = f"CREATE OR REPLACE MACRO {_duck_name(full_name)}({', '.join(quote(p) for p, _ in params)}) AS {duck_body}"
    with session.engine.locked([catalog]):
        session.prepare_cursor().execute(macro)
    owner = existing["owner"] if existing else session.who.name
    session.backend.store.put(
        KIND,
        full_name,
        {
            "full_name": full_name,
            "owner": owner,
            "input_params": [{"name": p, "type_text": k} for p, k in params],
            "data_type": returns_type,
            "routine_body": "SQL",
            "routine_definition": definition,
        },
    )


def drop_function(session: Session, name: str, if_exists: bool) -> None:
    full_name = session.qualify(name, 3)
    found = get_function(session, full_name)
    if found is None:
        if if_exists:
            return
        raise SqlError("ROUTINE_NOT_FOUND", f"The routine `{full_name}` cannot be found.", sqlstate="42883")
    if not (session.who.is_admin or found["owner"] == session.who.name):
        raise insufficient(f"User {session.who.name} is not an owner of Function '{full_name}'.")
    catalog = full_name.split(".")[0]
    with session.engine.locked([catalog]):
        session.prepare_cursor().execute(f"DROP MACRO IF EXISTS {_duck_name(full_name)}")
    session.backend.store.delete(KIND, full_name)


def set_mask(session: Session, table: str, column: str, function: str | None, using: list[str]) -> None:
    """`function` None drops the column's mask."""
    full = session.qualify(table, 3)
    uc, who = session.uc, session.who
    info = uc.get_table(who, full)
    if not (who.is_admin or uc.holds(who, "TABLE", full, "MANAGE")):
        raise insufficient(f"User {who.name} is not an owner of Table '{full}'.")
    names = {c["name"].lower(): c["name"] for c in info["columns"]}
    for wanted in [column, *using]:
        if wanted.lower() not in names:
            raise SqlError(
                "UNRESOLVED_COLUMN", f"A column `{wanted}` cannot be resolved in table `{full}`.", sqlstate="42703"
            )
    mask = None
    if function is not None:
        fn = session.qualify(function, 3)
        found = get_function(session, fn)
        if found is None:
            raise SqlError("ROUTINE_NOT_FOUND", f"The routine `{fn}` cannot be found.", sqlstate="42883")
        if len(found["input_params"]) != 1 + len(using):
            raise SqlError(
                "MASK_FUNCTION_ARITY",
                f"The mask function `{fn}` takes {len(found['input_params'])} argument(s); the column and "
                f"USING COLUMNS give {1 + len(using)}.",
            )
        mask = {"function_name": fn, "using_column_names": [names[u.lower()] for u in using]}
    uc.set_column_mask(full, names[column.lower()], mask)


MaskLookup = Callable[[str], dict[str, dict[str, Any]]]


def apply_masks(tree: exp.Expr, masks_of: MaskLookup) -> exp.Expr:
    """Replace every table the statement reads that has column masks with a masking subquery.

    Runs after `translate.qualify`, so table nodes carry DuckDB names; write targets are left alone."""
    targets = t._targets(tree)
    for table in list(tree.find_all(exp.Table)):
        if id(table) in targets or not table.name or not table.catalog or isinstance(table.this, exp.Func):
            continue
        masks = masks_of(f"{_uc_catalog(table.catalog)}.{table.db}.{table.name}")
        if not masks:
            continue
        replace = []
        for column, mask in sorted(masks.items()):
            catalog, schema, fn = mask["function_name"].split(".")
            args = [exp.column(column, quoted=True)] + [
                exp.column(u, quoted=True) for u in mask.get("using_column_names") or []
            ]
            call = exp.Dot(
                this=exp.Dot(this=exp.to_identifier(t.duck_catalog(catalog), quoted=True),
                             expression=exp.to_identifier(schema, quoted=True)),
                expression=exp.Anonymous(this=exp.to_identifier(fn, quoted=True), expressions=args),
            )  # fmt: skip
            replace.append(exp.alias_(call, column, quoted=True))
        inner = exp.Table(this=table.this.copy(), db=table.args["db"].copy(), catalog=table.args["catalog"].copy())
        select = exp.Select(expressions=[exp.Star(replace=replace)]).from_(inner)
        alias = table.args.get("alias")
        alias_name = alias.name if alias is not None and alias.name else table.name
        table.replace(exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias_name))))
    return tree
