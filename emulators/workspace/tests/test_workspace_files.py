"""Workspace files: import, export, get-status, list, mkdirs, delete."""

from __future__ import annotations

import base64

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType


def test_import_export_list_delete(w: WorkspaceClient) -> None:
    with pytest.raises(ResourceDoesNotExist, match="parent folder"):
        w.workspace.import_("/Shared/pipe/x.py", content=base64.b64encode(b"1").decode(), format=ImportFormat.AUTO)
    w.workspace.mkdirs("/Workspace/Shared/pipe/tasks")
    w.workspace.upload("/Shared/pipe/tasks/fetch.py", b"print('fetch')\n", format=ImportFormat.AUTO)
    w.workspace.upload(
        "/Shared/pipe/nb",
        b"# Databricks notebook source\nprint(1)\n",
        language=Language.PYTHON,
        format=ImportFormat.SOURCE,
    )
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload("/Shared/pipe/tasks/fetch.py", b"print(2)", format=ImportFormat.AUTO)
    w.workspace.upload("/Shared/pipe/tasks/fetch.py", b"print(2)", format=ImportFormat.AUTO, overwrite=True)

    status = w.workspace.get_status("/Shared/pipe/tasks/fetch.py")
    assert status.object_type == ObjectType.FILE and status.size == 8
    assert w.workspace.get_status("/Shared/pipe/nb").object_type == ObjectType.NOTEBOOK
    assert w.workspace.download("/Shared/pipe/tasks/fetch.py").read() == b"print(2)"
    exported = w.workspace.export("/Shared/pipe/tasks/fetch.py", format=ExportFormat.SOURCE)
    assert base64.b64decode(exported.content) == b"print(2)"
    listed = {o.path: o.object_type for o in w.workspace.list("/Shared/pipe")}
    assert listed == {"/Shared/pipe/tasks": ObjectType.DIRECTORY, "/Shared/pipe/nb": ObjectType.NOTEBOOK}
    assert {o.path for o in w.workspace.list("/Shared/pipe", recursive=True)} >= {"/Shared/pipe/tasks/fetch.py"}

    with pytest.raises(Exception, match="not empty"):
        w.workspace.delete("/Shared/pipe")
    w.workspace.delete("/Shared/pipe", recursive=True)
    with pytest.raises(NotFound):
        w.workspace.get_status("/Shared/pipe/tasks/fetch.py")
