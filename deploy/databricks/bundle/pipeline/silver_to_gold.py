"""silver_to_gold: build each gold table whose silver sources exist (a Databricks Python file task).

The gold tables are plain SQL files in the workspace folder `--gold-folder`, each starting with
`-- requires: <silver table>, ...` and using two-part names (`silver.x`, `gold.y`); they run with the tenant's
catalog as the statement's catalog. A gold table whose sources are absent is not built, and the task says so
(the demo agent reads that as "no such data for this tenant").
"""

from __future__ import annotations

import argparse
import re
import time

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import StatementState


def warehouse(w: WorkspaceClient, given: str) -> str:
    if given:
        return given
    found = list(w.warehouses.list())
    running = [x for x in found if x.state and x.state.value == "RUNNING"]
    if not (running or found):
        raise RuntimeError("no SQL warehouse: pass the warehouse_id job parameter")
    return str((running or found)[0].id)


def run(w: WorkspaceClient, wh: str, catalog: str, statement: str) -> None:
    done = w.statement_execution.execute_statement(
        statement=statement, warehouse_id=wh, catalog=catalog, wait_timeout="50s"
    )
    while done.status and done.status.state in (StatementState.PENDING, StatementState.RUNNING):
        time.sleep(0.5)
        done = w.statement_execution.get_statement(str(done.statement_id))
    if done.status is None or done.status.state != StatementState.SUCCEEDED:
        error = done.status.error.message if done.status and done.status.error else "no status"
        raise RuntimeError(f"SQL failed: {error}\n{statement[:300]}")


def statements(text: str) -> list[str]:
    """One statement per API call (Databricks refuses several); our gold files end statements with `;`."""
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip() and not _only_comments(s)]


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--warehouse-id", default="")
    parser.add_argument("--gold-folder", required=True)
    args = parser.parse_args()
    w = WorkspaceClient()
    wh = warehouse(w, args.warehouse_id)
    silver = {t.name for t in w.tables.list(catalog_name=args.catalog, schema_name="silver")}
    built, skipped = [], []
    for item in sorted(w.workspace.list(args.gold_folder), key=lambda o: str(o.path)):
        path = str(item.path)
        if not path.endswith(".sql"):
            continue
        with w.workspace.download(path) as f:
            text = f.read().decode("utf-8")
        found = re.search(r"^--\s*requires:\s*(.+)$", text, re.MULTILINE)
        requires = [r.strip() for r in found[1].split(",")] if found else []
        table = path.rsplit("/", 1)[-1][: -len(".sql")]
        missing = [r for r in requires if r not in silver]
        if missing:
            skipped.append(table)
            print(f"gold.{table}: not built, its sources are absent: {', '.join('silver.' + m for m in missing)}")
            continue
        for statement in statements(text):
            run(w, wh, args.catalog, statement)
        built.append(table)
        print(f"gold.{table}: built from {', '.join('silver.' + r for r in requires)}")
    print(f"gold: built {built or 'nothing'}; not built (sources absent) {skipped or 'none'}")


if __name__ == "__main__":
    main()
