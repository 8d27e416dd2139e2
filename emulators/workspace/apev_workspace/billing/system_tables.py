"""Serve the billing tables through the SQL engine's `system` catalog, when the workspace has one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apev_workspace.server import Workspace


def register(workspace: Workspace) -> bool:
    """Register `system.billing.usage` and `system.billing.list_prices` with the SQL engine; False without it."""
    sql = getattr(workspace, "sql", None)
    registry = getattr(sql, "system_tables", None)
    if registry is None:
        return False
    from apev_workspace.sql.system import SystemTable

    billing = workspace.billing
    for name in ("usage", "list_prices"):

        def rows(name: str = name) -> list[dict[str, Any]]:
            return billing.billing_tables()[name].rows

        columns = billing.billing_tables()[name].columns
        registry.register(f"billing.{name}", SystemTable(columns=columns, rows=rows, comment=f"system.billing.{name}"))
    return True
