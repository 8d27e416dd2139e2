"""Files API errors."""

from __future__ import annotations

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)

__all__ = ["ApiError", "DirectoryNotEmpty", "InvalidParameterValue", "ResourceAlreadyExists", "ResourceDoesNotExist"]


class DirectoryNotEmpty(ApiError):
    status = 400
    error_code = "DIRECTORY_NOT_EMPTY"
