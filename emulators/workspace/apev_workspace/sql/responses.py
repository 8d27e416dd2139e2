"""SQL warehouses and Statement Execution endpoints in Databricks' wire shape."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.http import Call


def list_warehouses(call: Call) -> Any:
    return {"warehouses": call.workspace.sql.warehouses.list()}


def create_warehouse(call: Call) -> Any:
    return {"id": call.workspace.sql.warehouses.create(call.principal, call.body)}


def get_warehouse(call: Call) -> Any:
    warehouses = call.workspace.sql.warehouses
    return warehouses.info(warehouses.get(call.path["id"]))


def edit_warehouse(call: Call) -> Any:
    call.workspace.sql.warehouses.edit(call.principal, call.path["id"], call.body)
    return {}


def start_warehouse(call: Call) -> Any:
    call.workspace.sql.warehouses.set_state(call.principal, call.path["id"], "RUNNING")
    return {}


def stop_warehouse(call: Call) -> Any:
    call.workspace.sql.warehouses.set_state(call.principal, call.path["id"], "STOPPED")
    return {}


def delete_warehouse(call: Call) -> Any:
    call.workspace.sql.warehouses.delete(call.principal, call.path["id"])
    return {}


def execute_statement(call: Call) -> Any:
    return call.workspace.sql.statements.execute(call.principal, call.body)


def get_statement(call: Call) -> Any:
    return call.workspace.sql.statements.get(call.principal, call.path["statement_id"])


def get_chunk(call: Call) -> Any:
    index = int(call.path["chunk_index"])
    return call.workspace.sql.statements.chunk(call.principal, call.path["statement_id"], index)


def cancel_statement(call: Call) -> Any:
    call.workspace.sql.statements.cancel(call.principal, call.path["statement_id"])
    return {}
