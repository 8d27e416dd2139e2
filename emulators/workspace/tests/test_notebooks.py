"""Notebook tasks: Python source notebooks with widgets, secrets and `dbutils.notebook.exit`."""

from __future__ import annotations

from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs

from apev_workspace.testing import upload, wait_run

NOTEBOOK = """# Databricks notebook source
# MAGIC %md
# MAGIC # Ingest
# MAGIC Reads its widgets and a secret, then exits with a summary.

# COMMAND ----------

dbutils.widgets.text("tenant", "default-tenant")
dbutils.widgets.text("unset", "fallback")
tenant = dbutils.widgets.get("tenant")
day = dbutils.widgets.get("day")
key = dbutils.secrets.get("mcp", "api_key")
print(f"tenant={tenant} day={day}")

# COMMAND ----------

import json
summary = {"tenant": tenant, "day": day, "key_len": len(key), "unset": dbutils.widgets.get("unset")}
try:
    dbutils.notebook.exit(json.dumps(summary))
except Exception:
    print("exit must not be swallowed by except Exception")

# COMMAND ----------

open(MARKER, "w").write("ran past exit")
"""

FAILING = """# Databricks notebook source
x = 1

# COMMAND ----------

raise ValueError(f"bad value {x}")
"""


def _notebook_task(key: str, path: str, **params: str) -> jobs.Task:
    return jobs.Task(task_key=key, notebook_task=jobs.NotebookTask(notebook_path=path, base_parameters=params or None))


def test_notebook_reads_widgets_and_a_secret_and_exits_with_a_value(w: WorkspaceClient, tmp_path: Path) -> None:
    w.secrets.create_scope("mcp")
    w.secrets.put_secret("mcp", "api_key", string_value="t1_sk_0123456789")
    marker = tmp_path / "marker"
    path = upload(w, "/Shared/nb/ingest.py", NOTEBOOK.replace("MARKER", repr(str(marker))))
    assert w.workspace.get_status("/Shared/nb/ingest").object_type.value == "NOTEBOOK"
    job = w.jobs.create(
        name="nb",
        parameters=[jobs.JobParameterDefinition(name="day", default="2026-01-01")],
        tasks=[_notebook_task("ingest", path.removesuffix(".py"), tenant="t0", day="overridden")],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id, job_parameters={"day": "2026-11-25"}).run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state.state_message

    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert output.notebook_output.result == (
        '{"tenant": "t0", "day": "2026-11-25", "key_len": 16, "unset": "fallback"}'
    )  # job parameters override base_parameters; widget defaults apply when nothing is passed
    assert output.notebook_output.truncated is False
    assert "tenant=t0 day=2026-11-25" in output.logs
    assert not marker.exists()  # exit stopped the notebook


def test_notebook_failure_and_unsupported_cells(w: WorkspaceClient) -> None:
    failing = upload(w, "/Shared/nb/failing.py", FAILING).removesuffix(".py")
    sql = upload(w, "/Shared/nb/sql.py", "# Databricks notebook source\n# MAGIC %sql\n# MAGIC SELECT 1\n")
    missing = upload(w, "/Shared/nb/missing.py", "# Databricks notebook source\ndbutils.widgets.get('nope')\n")
    plain = upload(w, "/Shared/nb/plain.py", "print('not a notebook')")
    job = w.jobs.create(
        name="nb-fail",
        tasks=[
            _notebook_task("failing", failing),
            _notebook_task("sql", sql.removesuffix(".py")),
            _notebook_task("missing", missing.removesuffix(".py")),
            _notebook_task("plain", plain),
        ],
    )
    run = wait_run(w, w.jobs.run_now(job.job_id).run_id)
    by_key = {t.task_key: t for t in run.tasks}
    out = w.jobs.get_run_output(by_key["failing"].run_id)
    assert out.error == "ValueError: bad value 1"
    assert "/Shared/nb/failing" in out.error_trace and "line 6" in out.error_trace
    assert out.notebook_output.result is None
    assert "magic command %sql is not supported" in w.jobs.get_run_output(by_key["sql"].run_id).error
    assert "No input widget named nope is defined" in w.jobs.get_run_output(by_key["missing"].run_id).error
    assert "is not a Python notebook" in by_key["plain"].state.state_message
    assert {t.state.result_state for t in run.tasks} == {jobs.RunResultState.FAILED}
