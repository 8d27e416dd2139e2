"""quality_checks: fail the run, naming the check and the numbers, when this run's data looks wrong.

Checks per entity of the data source (a Databricks Python file task):
- row_count: silver has rows, and every record fetched in this run reached bronze;
- null_keys: no bronze row of this run without its business key;
- duplicate_keys: no key twice in silver, and no key delivered twice at the same version in this run
  (MCP returns a changed record again only as a new version, so that is a broken source, not a change);
- freshness: the entity was fetched within the data source's freshness budget.
The task's error (runs/get-output, the run page) lists every failed check.
"""

from __future__ import annotations

import argparse
import time

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import StatementParameterListItem, StatementState

# Business key per MCP entity type, as in apev_pipeline.entities (this file runs on its own, on Databricks).
KEYS = {
    "employees": "employee_id",
    "payroll_runs": "payroll_run_id",
    "production_kpis": "kpi_id",
    "locations": "location_id",
    "financials": "financial_id",
    "journal_entries": "journal_entry_id",
    "documents": "document_id",
}


class QualityCheckFailed(Exception):
    pass


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


def check_entity(
    w: WorkspaceClient, wh: str, catalog: str, ds: str, entity: str, run_id: str, budget: int
) -> list[str]:
    key, bronze, silver = KEYS[entity], f"{catalog}.bronze.{entity}", f"{catalog}.silver.{entity}"
    failures: list[str] = []
    state = sql(
        w,
        wh,
        "SELECT last_run_id, last_run_records, timestampdiff(MINUTE, fetched_at, current_timestamp())"
        f" FROM {catalog}.bronze.ingest_state WHERE datasource_id = :ds AND entity = :entity",
        ds=ds,
        entity=entity,
    )
    fetched_run, fetched, age = state[0] if state else [None, "0", None]
    fetched_now = int(fetched or 0) if fetched_run == run_id else 0
    silver_rows = int(sql(w, wh, f"SELECT count(*) FROM {silver}")[0][0] or 0)
    folder = f"%/{entity}/run-{run_id}-%"
    landed = int(sql(w, wh, f"SELECT count(*) FROM {bronze} WHERE _source_file LIKE :folder", folder=folder)[0][0] or 0)
    print(f"{entity}: fetched {fetched_now} in run {run_id}, bronze has {landed} of them, silver {silver_rows} rows")
    if silver_rows == 0:
        failures.append(f"row_count: {silver} has 0 rows (fetched {fetched_now} records in run {run_id})")
    if landed != fetched_now:
        failures.append(f"row_count: run {run_id} fetched {fetched_now} {entity} records but {landed} reached {bronze}")
    nulls = int(
        sql(w, wh, f"SELECT count(*) FROM {bronze} WHERE _run_id = :run AND {key.upper()} IS NULL", run=run_id)[0][0]
        or 0
    )
    if nulls:
        failures.append(f"null_keys: {nulls} row(s) of {bronze} in run {run_id} have no {key}")
    silver_dupes = sql(w, wh, f"SELECT {key}, count(*) FROM {silver} GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5")
    if silver_dupes:
        failures.append(
            f"duplicate_keys: {silver} has {key} more than once: {', '.join(str(r[0]) for r in silver_dupes)}"
        )
    delivered_twice = sql(
        w,
        wh,
        f"SELECT {key.upper()}, VERSION, count(*) FROM {bronze} WHERE _run_id = :run GROUP BY 1, 2"
        " HAVING count(*) > 1 ORDER BY 1",
        run=run_id,
    )
    if delivered_twice:
        sample = ", ".join(f"{r[0]} v{r[1]} x{r[2]}" for r in delivered_twice[:5])
        failures.append(
            f"duplicate_keys: MCP delivered {len(delivered_twice)} {entity} key(s) twice at the same version"
            f" in run {run_id} ({sample})"
        )
    if age is None or int(age) > budget:
        failures.append(
            f"freshness: {entity} last fetched {age if age is not None else 'never'} min ago, budget {budget} min"
        )
    return failures


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("tenant-id", "catalog", "datasource-id", "system", "entities", "freshness-minutes", "page-size",
                 "warehouse-id", "secret-scope", "run-id"):  # fmt: skip
        parser.add_argument(f"--{name}", default="")
    args = parser.parse_args()
    w = WorkspaceClient()
    wh = warehouse(w, args.warehouse_id)
    failures: list[str] = []
    for entity in [e for e in args.entities.split(",") if e]:
        failures += check_entity(
            w, wh, args.catalog, args.datasource_id, entity, args.run_id, int(args.freshness_minutes or 1440)
        )
    if failures:
        raise QualityCheckFailed(f"{len(failures)} quality check(s) failed: " + "; ".join(failures))
    print("all quality checks passed")


if __name__ == "__main__":
    main()
