"""The `notebook_task` runner: a Python source notebook from the workspace, run in its own task process.

Widgets are the task's `base_parameters` (dynamic references substituted) merged with the run's job
parameters, job parameters winning, as Databricks pushes job parameters down to notebook tasks. The value
given to `dbutils.notebook.exit` becomes the task's `notebook_output` (first 5 MB, `truncated`).
"""

from __future__ import annotations

import json
import posixpath
import subprocess
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from apev_workspace.core.exceptions import ApiError
from apev_workspace.jobs.execution import Handle, Outcome, ProcessHandle, TaskSetupError, spawn_task_process
from apev_workspace.jobs.templating import UnknownReference, context_for, substitute

if TYPE_CHECKING:
    from apev_workspace.jobs.execution import Executor

RESULT_LIMIT = 5 * 1024 * 1024


class NotebookHandle(ProcessHandle):
    def __init__(
        self, proc: subprocess.Popen[bytes], workdir: Path, files: list[IO[bytes]], task: dict[str, Any]
    ) -> None:
        super().__init__(proc, workdir, files)
        self.task = task

    def poll(self) -> Outcome | None:
        outcome = super().poll()
        if outcome is not None:
            self.task["notebook_output"] = notebook_output(self.workdir)
        return outcome


def notebook_output(workdir: Path) -> dict[str, Any]:
    try:
        result = str(json.loads((workdir / "notebook_exit.json").read_text(encoding="utf-8"))["result"])
    except (OSError, ValueError, KeyError):
        return {}
    encoded = result.encode()
    if len(encoded) > RESULT_LIMIT:
        return {"result": encoded[:RESULT_LIMIT].decode("utf-8", "ignore"), "truncated": True}
    return {"result": result, "truncated": False}


def run_notebook_task(ex: Executor, run: dict[str, Any], task: dict[str, Any]) -> Handle:
    spec = task["spec"]["notebook_task"]
    if spec.get("source", "WORKSPACE") != "WORKSPACE":
        raise TaskSetupError(f"notebook_task source {spec['source']} is not supported locally; use WORKSPACE")
    values = context_for(run, task)
    try:
        path = substitute(spec["notebook_path"], values)
        base = {str(k): substitute(str(v), values) for k, v in (spec.get("base_parameters") or {}).items()}
    except UnknownReference as err:
        raise TaskSetupError(str(err)) from None
    try:
        obj, code = ex.files.read(path)
    except ApiError as err:
        raise TaskSetupError(f"Cannot read notebook {path}: {err.message}") from None
    if obj["object_type"] != "NOTEBOOK" or obj.get("language") != "PYTHON":
        raise TaskSetupError(
            f"{obj['path']} is not a Python notebook (it is a {obj.get('language') or ''} {obj['object_type']}); "
            "import it with format SOURCE and language PYTHON, or AUTO with a '# Databricks notebook source' header"
        )
    workdir = ex.runs_dir / str(task["run_id"])
    sources = workdir / "src"  # the notebook's folder, so sibling files import as on Databricks
    sources.mkdir(parents=True, exist_ok=True)
    ex.files.materialize(posixpath.dirname(obj["path"]), sources)
    notebook = sources / f"{posixpath.basename(obj['path']) or 'notebook'}.py"
    notebook.write_bytes(code)
    widgets = {**base, **{k: str(v) for k, v in (run.get("params") or {}).items()}}
    (workdir / "widgets.json").write_text(json.dumps(widgets), encoding="utf-8")
    env = ex.task_env(run, task, workdir)
    env.update(
        {
            "APEV_NOTEBOOK_WIDGETS": str(workdir / "widgets.json"),
            "APEV_NOTEBOOK_EXIT_FILE": str(workdir / "notebook_exit.json"),
            "APEV_NOTEBOOK_PATH": obj["path"],
        }
    )
    proc, files = spawn_task_process(
        ["apev_workspace.jobs.notebook_entry", str(notebook)], cwd=sources, env=env, workdir=workdir, task=task
    )
    return NotebookHandle(proc, workdir, files, task)
