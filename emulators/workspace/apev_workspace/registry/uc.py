"""The one place the registry asks Unity Catalog whether a model's catalog and schema exist."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apev_workspace.identity.models import Principal
    from apev_workspace.server import Workspace


def require_schema(workspace: Workspace, catalog: str, schema: str, who: Principal) -> None:
    """Raise Unity Catalog's own error (404, or 403 when `who` cannot see it) unless `catalog.schema` exists.

    A no-op in a workspace without the Unity Catalog area (`workspace.uc`)."""
    uc = getattr(workspace, "uc", None)
    if uc is None:
        return
    uc.get_schema(who, f"{catalog}.{schema}")
