"""Fixtures: a local workspace per test (free port, temporary data dir) and SDK clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from apev_workspace.testing import RunningWorkspace, running_workspace


@pytest.fixture(autouse=True)
def _no_databricks_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("DATABRICKS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[RunningWorkspace]:
    with running_workspace(tmp_path / "workspace") as running:
        yield running


@pytest.fixture
def w(ws: RunningWorkspace) -> WorkspaceClient:
    return ws.client()
