"""Permissions endpoints in Databricks' wire shape."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.http import Call


def get_permissions(call: Call) -> Any:
    return call.workspace.permissions.get(call.principal, call.path["object_type"], call.path["object_id"])


def get_levels(call: Call) -> Any:
    return call.workspace.permissions.levels(call.principal, call.path["object_type"], call.path["object_id"])


def set_permissions(call: Call) -> Any:
    p = call.path
    return call.workspace.permissions.update(call.principal, p["object_type"], p["object_id"], call.body, replace=True)


def update_permissions(call: Call) -> Any:
    p = call.path
    return call.workspace.permissions.update(call.principal, p["object_type"], p["object_id"], call.body, replace=False)
