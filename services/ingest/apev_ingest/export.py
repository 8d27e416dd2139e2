"""The export before an offboarding: each of the tenant's gold tables as NDJSON (one object per row, column
name -> value as the Statement Execution API gives it) in a volume of *another* catalog, with a manifest
(columns with their types, row counts), written with the Files API before the catalog is dropped.

`/Volumes/<archive catalog>/<schema>/<volume>[/<folder>]` is the operator's; the files land under
`<it>/<tenant catalog>/gold/<table>.json` and `<it>/<tenant catalog>/manifest.json`. A repeat overwrites them
with the same content, so a resumed offboarding exports again safely.
"""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import sql

from apev_runtime.errors import PermanentError

LAYERS = ("gold",)
_VOLUME = re.compile(r"^/Volumes/([A-Za-z0-9_]+)/([A-Za-z0-9_]+)/([A-Za-z0-9_]+)(/.*)?$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){2}$")


def check_destination(w: WorkspaceClient, catalog: str, volume_path: str) -> str:
    """The volume path without a trailing slash; refused (PermanentError) when it is in the tenant's own
    catalog, which is about to be dropped, or names no volume."""
    found = _VOLUME.fullmatch(volume_path.rstrip("/"))
    if found is None:
        raise PermanentError(f"export_volume: {volume_path!r} is not /Volumes/<catalog>/<schema>/<volume>[/...]")
    cat, schema, volume = found.group(1), found.group(2), found.group(3)
    if cat.lower() == catalog.lower():
        raise PermanentError(f"export_volume: {volume_path!r} is in the tenant's own catalog, which is dropped")
    try:
        w.volumes.read(f"{cat}.{schema}.{volume}")
    except NotFound:
        raise PermanentError(f"export_volume: there is no volume {cat}.{schema}.{volume}") from None
    return volume_path.rstrip("/")


def _rows(w: WorkspaceClient, warehouse_id: str, table: str) -> tuple[list[str], list[list[str | None]]]:
    if not _SAFE_NAME.fullmatch(table):
        raise PermanentError(f"table name {table!r} is not a plain three-part name; refusing to build SQL with it")
    statement = f"SELECT * FROM {table}"  # noqa: S608 (a checked name from Unity Catalog's listing)
    done = w.statement_execution.execute_statement(statement=statement, warehouse_id=warehouse_id, wait_timeout="50s")
    while done.status and done.status.state in (sql.StatementState.PENDING, sql.StatementState.RUNNING):
        time.sleep(0.2)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != sql.StatementState.SUCCEEDED:
        error = done.status.error if done.status else None
        raise PermanentError(f"export of {table} failed: {error}")
    columns = [str(c.name) for c in (done.manifest.schema.columns or [])] if done.manifest and done.manifest.schema \
        else []  # fmt: skip
    rows: list[list[str | None]] = [list(r) for r in (done.result.data_array or [])] if done.result else []
    chunks = (done.manifest.total_chunk_count or 1) if done.manifest else 1
    for n in range(1, chunks):
        chunk = w.statement_execution.get_statement_result_chunk_n(str(done.statement_id), n)
        rows += [list(r) for r in chunk.data_array or []]
    return columns, rows


def export_tables(w: WorkspaceClient, catalog: str, warehouse_id: str, destination: str) -> dict[str, Any]:
    """Every table of the tenant's exported layers into `destination`; what was written."""
    root = f"{destination}/{catalog}"
    tables: dict[str, Any] = {}
    for layer in LAYERS:
        try:
            listed = sorted(w.tables.list(catalog_name=catalog, schema_name=layer), key=lambda i: str(i.full_name))
        except NotFound:
            continue
        for info in listed:
            columns, rows = _rows(w, warehouse_id, str(info.full_name))
            body = "".join(json.dumps(dict(zip(columns, r, strict=True)), separators=(",", ":")) + "\n" for r in rows)
            path = f"{root}/{layer}/{info.name}.json"
            w.files.upload(path, io.BytesIO(body.encode()), overwrite=True)
            tables[str(info.full_name)] = {
                "file": path,
                "rows": len(rows),
                "columns": [{"name": str(c.name), "type": str(c.type_text)} for c in info.columns or []],
            }
    manifest = {"catalog": catalog, "layers": list(LAYERS), "tables": tables}
    w.files.upload(f"{root}/manifest.json", io.BytesIO(json.dumps(manifest, indent=2).encode()), overwrite=True)
    return {"destination": root, "tables": {n: t["rows"] for n, t in tables.items()}}
