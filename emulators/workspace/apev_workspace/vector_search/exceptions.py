"""Vector Search errors, with the codes Databricks answers."""

from __future__ import annotations

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

__all__ = [
    "ApiError",
    "InvalidParameterValue",
    "InvalidState",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "ResourceDoesNotExist",
]
