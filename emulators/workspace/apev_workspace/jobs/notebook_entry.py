"""Entry point of a notebook task process: `python -m apev_workspace.jobs.notebook_entry <notebook.py>`.

Runs a Python source notebook (`# Databricks notebook source`, cells split on `# COMMAND ----------`) cell by
cell in one namespace, as a notebook session does. Adds to task_entry's `dbutils` (secrets) the parts a
job's notebook needs: `dbutils.widgets` (the task's base_parameters merged with the job parameters, read from
$APEV_NOTEBOOK_WIDGETS) and `dbutils.notebook.exit(value)`, which stops the notebook and leaves the value in
$APEV_NOTEBOOK_EXIT_FILE for `runs/get-output`. Markdown cells (`# MAGIC %md`) are skipped; other magics
(`%sql`, `%pip`, `%run`, ...) fail the task with a clear message. Imports only the standard library.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
from typing import Any

from apev_workspace.jobs.task_entry import _Secrets, run_reporting_errors

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
MAGIC = "# MAGIC"


class NotebookExit(BaseException):
    """Raised by `dbutils.notebook.exit`; a BaseException so a notebook's `except Exception` cannot swallow it."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class InputWidgetNotDefined(Exception):
    pass


class _Widgets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = dict(values)
        self._defaults: dict[str, str] = {}

    def get(self, name: str) -> str:
        if name in self._values:
            return self._values[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name: str, optional: str | None = None) -> str | None:  # noqa: N802 (dbutils' spelling)
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return optional

    def getAll(self) -> dict[str, str]:  # noqa: N802
        return {**self._defaults, **self._values}

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:  # noqa: N803
        self._defaults[name] = str(defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        self._defaults[name] = str(defaultValue)

    combobox = dropdown

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label: str | None = None) -> None:  # noqa: N803
        self._defaults[name] = str(defaultValue)

    def remove(self, name: str) -> None:
        self._defaults.pop(name, None)

    def removeAll(self) -> None:  # noqa: N802
        self._defaults.clear()


class _Notebook:
    def exit(self, value: Any) -> None:
        raise NotebookExit("" if value is None else str(value))

    def run(self, path: str, timeout_seconds: int = 0, arguments: dict[str, str] | None = None) -> str:
        raise NotImplementedError("dbutils.notebook.run is not supported by the local workspace")


class NotebookDBUtils:
    def __init__(self, widgets: dict[str, str]) -> None:
        self.secrets = _Secrets()
        self.widgets = _Widgets(widgets)
        self.notebook = _Notebook()


def cells(source: str) -> list[tuple[int, str]]:
    """(first line number - 1, code) of each cell, so tracebacks point at the notebook's own lines."""
    lines = source.splitlines()
    out: list[tuple[int, str]] = []
    start = 1 if lines and lines[0].strip() == HEADER else 0
    current: list[str] = []
    first = start
    for number, line in enumerate(lines[start:], start=start):
        if line.strip() == SEPARATOR:
            out.append((first, "\n".join(current)))
            current, first = [], number + 1
        else:
            current.append(line)
    out.append((first, "\n".join(current)))
    return [(offset, code) for offset, code in out if code.strip()]


def _magic(code: str) -> str | None:
    """The magic command of a `# MAGIC %...` cell, None for ordinary Python."""
    body = [line.strip() for line in code.splitlines() if line.strip()]
    if body and all(line.startswith(MAGIC) for line in body):
        first = body[0][len(MAGIC) :].strip()
        return first.split()[0] if first.startswith("%") else "%md"
    return None


def run(path: str, name: str) -> None:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": path, "display": print}
    namespace["dbutils"] = builtins.dbutils  # type: ignore[attr-defined]
    for number, (offset, code) in enumerate(cells(source), start=1):
        magic = _magic(code)
        if magic in ("%md", "%md-sandbox"):
            continue
        if magic is not None:
            raise NotImplementedError(f"Cell {number}: magic command {magic} is not supported by the local workspace")
        exec(compile("\n" * offset + code, name, "exec"), namespace)  # noqa: S102 (running the notebook is the point)


def main() -> None:
    path = sys.argv[1]
    name = os.environ.get("APEV_NOTEBOOK_PATH", path)
    sys.argv = [name]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    widgets_file = os.environ.get("APEV_NOTEBOOK_WIDGETS")
    widgets: dict[str, str] = {}
    if widgets_file:
        with open(widgets_file, encoding="utf-8") as f:
            widgets = json.load(f)
    builtins.dbutils = NotebookDBUtils(widgets)  # type: ignore[attr-defined]
    run_reporting_errors(lambda: _run_until_exit(path, name))


def _run_until_exit(path: str, name: str) -> None:
    try:
        run(path, name)
    except NotebookExit as done:
        with open(os.environ.get("APEV_NOTEBOOK_EXIT_FILE", "notebook_exit.json"), "w", encoding="utf-8") as f:
            json.dump({"result": done.value}, f)


if __name__ == "__main__":
    main()
