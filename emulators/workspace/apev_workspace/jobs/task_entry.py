"""Entry point of every task process: `python -m apev_workspace.jobs.task_entry <file> [args...]`.

Runs the task's Python file as `__main__` with `sys.argv` set to its parameters, after installing a small
`dbutils` (just `dbutils.secrets`) into builtins, as Databricks makes `dbutils` available to task code.
Secrets are read through the workspace's `secrets/get` endpoint with the run-as principal's short-lived
token, so secret ACLs apply to tasks exactly as to any client. An uncaught exception is written to
`error.json` for `runs/get-output` (`error`, `error_trace`). Imports only the standard library.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import runpy
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any


class SecretsError(Exception):
    """What `dbutils.secrets` raises when the workspace refuses (PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST)."""


def _call(path: str, query: dict[str, str]) -> Any:
    host = os.environ["DATABRICKS_HOST"].rstrip("/")
    url = f"{host}{path}?{urllib.parse.urlencode(query)}"
    if not url.startswith(("http://", "https://")):
        raise SecretsError(f"DATABRICKS_HOST must be an http(s) URL, got {host!r}")
    token = os.environ["DATABRICKS_TOKEN"]
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http(s) checked above)
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            body = json.loads(err.read())
            raise SecretsError(f"{body.get('error_code')}: {body.get('message')}") from None
        except ValueError:
            raise SecretsError(f"HTTP {err.code}") from None


class _Secrets:
    def getBytes(self, scope: str, key: str) -> bytes:  # noqa: N802 (dbutils' own spelling)
        return base64.b64decode(_call("/api/2.0/secrets/get", {"scope": scope, "key": key})["value"])

    def get(self, scope: str, key: str) -> str:
        return self.getBytes(scope, key).decode("utf-8")

    def list(self, scope: str) -> builtins.list[dict[str, Any]]:
        return list(_call("/api/2.0/secrets/list", {"scope": scope}).get("secrets", []))

    def listScopes(self) -> builtins.list[dict[str, Any]]:  # noqa: N802
        return list(_call("/api/2.0/secrets/scopes/list", {}).get("scopes", []))


class DBUtils:
    secrets = _Secrets()


def main() -> None:
    script, args = sys.argv[1], sys.argv[2:]
    sys.argv = [script, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    builtins.dbutils = DBUtils()  # type: ignore[attr-defined]
    run_reporting_errors(lambda: runpy.run_path(script, run_name="__main__"))


def run_reporting_errors(body: Callable[[], object]) -> None:
    """Run the task's code; a failure is written to the error file (for `get-output`) and exits non-zero."""
    try:
        body()
    except SystemExit as exc:
        if exc.code in (None, 0):
            raise
        _write_error(f"SystemExit: {exc.code}", traceback.format_exc())
        raise
    except BaseException as exc:
        trace = traceback.format_exc()
        _write_error(f"{type(exc).__name__}: {exc}", trace)
        sys.stderr.write(trace)
        sys.stderr.flush()
        sys.exit(1)


def _write_error(error: str, trace: str) -> None:
    with open(os.environ.get("APEV_TASK_ERROR_FILE", "error.json"), "w", encoding="utf-8") as f:
        json.dump({"error": error, "error_trace": trace}, f)


if __name__ == "__main__":
    main()
