"""`sql_task` in jobs: a SQL file from the workspace run on the local engine as the run-as principal.

Parameters: the job's parameters and the task's `parameters` (task wins), dynamic references substituted,
bound as named STRING parameters (`:name`). `query` (saved queries), `alert` and `dashboard` are not
emulated; they fail the task with a message saying so.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from apev_workspace.core.exceptions import ApiError
from apev_workspace.jobs.execution import Outcome, TaskSetupError
from apev_workspace.jobs.templating import UnknownReference, context_for, substitute
from apev_workspace.sql.exceptions import SqlError

if TYPE_CHECKING:
    from apev_workspace.jobs.execution import Executor
    from apev_workspace.sql.models import Sql
    from apev_workspace.sql.session import Session

_AREAS: weakref.WeakKeyDictionary[Any, Sql] = weakref.WeakKeyDictionary()


def bind(executor: Executor, sql: Sql) -> None:
    """Tell the sql_task runner which SQL area serves this executor's workspace."""
    _AREAS[executor] = sql


class SqlTaskHandle:
    def __init__(self, sql: Sql, warehouse_id: str, session: Session, text: str, params: dict[str, Any]) -> None:
        self.sql = sql
        self.warehouse_id = warehouse_id
        self.session = session
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._run, args=(text, params), name="apev-sql-task", daemon=True)
        self._thread.start()

    def _run(self, text: str, params: dict[str, tuple[Any, str]]) -> None:
        started = int(time.time() * 1000)
        try:
            self.session.run_script(text, params)
            self._outcome = Outcome("SUCCESS")
        except SqlError as err:
            self._outcome = Outcome("FAILED", "Workload failed, see run output for details", err.message)
        except Exception as err:
            self._outcome = Outcome("FAILED", "Workload failed", f"{type(err).__name__}: {err}")
        finally:
            self.sql.statement_ended(self.warehouse_id, started, int(time.time() * 1000), self.session.who)

    def poll(self) -> Outcome | None:
        return None if self._thread.is_alive() else self._outcome

    def kill(self) -> None:
        self.session.cancel()
        self._thread.join(timeout=5)


def run_sql_task(ex: Executor, run: dict[str, Any], task: dict[str, Any]) -> SqlTaskHandle:
    sql = _AREAS.get(ex)
    if sql is None:
        raise TaskSetupError("The SQL engine is not available in this workspace")
    spec = task["spec"]["sql_task"]
    for unsupported in ("query", "alert", "dashboard"):
        if spec.get(unsupported):
            raise TaskSetupError(f"sql_task.{unsupported} is not supported by the local workspace; use sql_task.file")
    file = spec.get("file") or {}
    if not file.get("path"):
        raise TaskSetupError("sql_task needs file.path (a workspace SQL file)")
    if file.get("source", "WORKSPACE") != "WORKSPACE":
        raise TaskSetupError(f"sql_task file source {file['source']} is not supported locally; use WORKSPACE")
    warehouse_id = spec.get("warehouse_id")
    if not warehouse_id:
        raise TaskSetupError("sql_task needs warehouse_id")
    values = context_for(run, task)
    principal = ex.identity.principal_for(run["run_as"]["kind"], run["run_as"]["id"])
    try:
        sql.warehouses.require_use(principal, str(warehouse_id))
        sql.warehouses.ensure_running(str(warehouse_id))
        path = substitute(file["path"], values)
        _, content = ex.files.read(path)
        params: dict[str, tuple[Any, str]] = {
            key[len("job.parameters.") :]: (value, "STRING")
            for key, value in values.items()
            if key.startswith("job.parameters.")
        }
        for name, value in (spec.get("parameters") or {}).items():
            params[name] = (substitute(str(value), values), "STRING")
    except UnknownReference as err:
        raise TaskSetupError(str(err)) from None
    except ApiError as err:
        raise TaskSetupError(f"Cannot run sql_task: {err.message}") from None
    return SqlTaskHandle(sql, str(warehouse_id), sql.session(principal), content.decode("utf-8"), params)
