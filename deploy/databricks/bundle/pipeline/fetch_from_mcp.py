"""fetch_from_mcp: page through the MCP data of each entity since its watermark, land NDJSON in the volume.

A Databricks Python file task (runs unchanged on Databricks and on the local workspace). Reads `mcp_api_key`
and `mcp_base_url` from the tenant's secret scope, finds the MCP integration of the data source, and for each
entity writes `/Volumes/<catalog>/bronze/landing/<data source>/<entity>/run-<run id>-<repair>/part-NNNNN.json`
(one folder per run and repair, so load_bronze's COPY INTO sees new files only). The watermark (the highest
UPDATED_AT seen) lives in `<catalog>.bronze.ingest_state`; it moves only after every page of an entity landed.
A landed file that a later task failed to load is not lost: COPY INTO loads it on the next run.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import StatementParameterListItem, StatementState

STATE = "bronze.ingest_state"


class McpError(Exception):
    """MCP refused a request; the message carries MCP's `detail`."""


def get_dbutils(w: WorkspaceClient) -> Any:
    # Notebook-style tasks get `dbutils` as a builtin; a plain Python file on Databricks gets it from the SDK.
    return globals().get("dbutils") or w.dbutils


def warehouse(w: WorkspaceClient, given: str) -> str:
    if given:
        return given
    found = list(w.warehouses.list())
    running = [x for x in found if x.state and x.state.value == "RUNNING"]
    if not (running or found):
        raise RuntimeError("no SQL warehouse: pass the warehouse_id job parameter")
    return str((running or found)[0].id)


def sql(w: WorkspaceClient, wh: str, statement: str, **params: str) -> list[list[str | None]]:
    items = [StatementParameterListItem(name=k, value=v) for k, v in params.items()]
    done = w.statement_execution.execute_statement(
        statement=statement, warehouse_id=wh, parameters=items, wait_timeout="50s"
    )
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.5)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        error = done.status.error.message if done.status and done.status.error else "no status"
        raise RuntimeError(f"SQL failed: {error}\n{statement[:300]}")
    data = done.result.data_array if done.result else None
    return [list(row) for row in data or []]


def mcp_get(session: requests.Session, url: str, params: dict[str, str | int]) -> Any:
    for attempt in range(5):
        response = session.get(url, params=params, timeout=60)
        if response.status_code in (429, 503) and attempt < 4:
            time.sleep(min(30, int(response.headers.get("Retry-After") or 1 + attempt)))
            continue
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            path = url.split("/api/", 1)[-1]
            raise McpError(f"MCP answered {response.status_code} on /api/{path}: {detail}")
        return response.json()
    raise McpError(f"MCP kept answering {response.status_code} on {url}")


def integration_id(session: requests.Session, base: str, system: str, datasource_id: str) -> str:
    statuses = mcp_get(session, f"{base}/api/v1/integrations/status", {"type": system})
    for status in statuses:
        extra = status.get("extra_data") or {}
        if extra.get("datasource_id") == datasource_id:
            return str(extra["integration_id"])
    raise McpError(f"MCP has no {system} integration for data source {datasource_id} (register it first)")


def land(w: WorkspaceClient, folder: str, number: int, records: list[dict[str, Any]]) -> None:
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode("utf-8")
    w.files.upload(f"{folder}part-{number:05d}.json", io.BytesIO(body), overwrite=True)


def clear(w: WorkspaceClient, folder: str) -> None:
    """A retried attempt starts its run folder afresh: no stale page of an earlier attempt is loaded."""
    try:
        existing = list(w.files.list_directory_contents(folder))
    except Exception:
        existing = []
    for item in existing:
        if not item.is_directory:
            w.files.delete(str(item.path))
    w.files.create_directory(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("tenant-id", "catalog", "datasource-id", "system", "entities", "freshness-minutes", "page-size",
                 "warehouse-id", "secret-scope", "run-id", "repair-count"):  # fmt: skip
        parser.add_argument(f"--{name}", default="")
    args = parser.parse_args()
    w = WorkspaceClient()
    dbutils = get_dbutils(w)
    key = dbutils.secrets.get(args.secret_scope, "mcp_api_key")
    base = dbutils.secrets.get(args.secret_scope, "mcp_base_url").rstrip("/")
    wh = warehouse(w, args.warehouse_id)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    source = integration_id(session, base, args.system, args.datasource_id)

    sql(
        w,
        wh,
        f"CREATE TABLE IF NOT EXISTS {args.catalog}.{STATE} (datasource_id STRING, entity STRING, watermark STRING,"
        " last_run_id STRING, last_run_records BIGINT, fetched_at TIMESTAMP)"
        " COMMENT 'fetch_from_mcp watermarks: the highest MCP UPDATED_AT landed per data source and entity'",
    )
    query = f"SELECT entity, watermark FROM {args.catalog}.{STATE} WHERE datasource_id = :ds"
    marks = {row[0]: row[1] for row in sql(w, wh, query, ds=args.datasource_id)}
    run_folder = f"run-{args.run_id}-{args.repair_count or 0}"
    for entity in [e for e in args.entities.split(",") if e]:
        folder = f"/Volumes/{args.catalog}/bronze/landing/{args.datasource_id}/{entity}/{run_folder}/"
        clear(w, folder)
        since = marks.get(entity)
        params: dict[str, str | int] = {"entity_type": entity, "limit": int(args.page_size or 500)}
        if since:
            params["updated_since"] = since
        pages = records = 0
        newest = since or ""
        cursor = None
        while True:
            page = mcp_get(
                session,
                f"{base}/api/v1/integrations/{source}/data",
                {**params, **({"cursor": cursor} if cursor else {})},
            )
            data = page.get("data") or []
            pages += 1
            if data:
                land(w, folder, pages, data)
                records += len(data)
                newest = max([newest, *(str(r.get("UPDATED_AT") or "") for r in data)])
            print(f"{entity}: page {pages}, {len(data)} records, {records} so far", flush=True)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        sql(
            w,
            wh,
            f"MERGE INTO {args.catalog}.{STATE} AS t"
            " USING (SELECT :ds AS datasource_id, :entity AS entity, :mark AS watermark, :run AS last_run_id,"
            " CAST(:records AS BIGINT) AS last_run_records, current_timestamp() AS fetched_at) AS s"
            " ON t.datasource_id = s.datasource_id AND t.entity = s.entity"
            " WHEN MATCHED THEN UPDATE SET *"
            " WHEN NOT MATCHED THEN INSERT *",
            ds=args.datasource_id,
            entity=entity,
            mark=newest,
            run=args.run_id,
            records=str(records),
        )
        print(f"{entity}: done, {pages} pages, {records} records, watermark {newest or '-'}", flush=True)


if __name__ == "__main__":
    main()
