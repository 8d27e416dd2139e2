"""Unity Catalog errors, with the codes Databricks answers."""

from __future__ import annotations

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

__all__ = [
    "ApiError",
    "InvalidParameterValue",
    "NotEmpty",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "ResourceDoesNotExist",
]


class NotEmpty(ApiError):
    """Deleting a catalog or schema that still holds objects, without `force`."""

    status = 400
    error_code = "INVALID_STATE"
