"""Workspace-object errors with the codes the Workspace API uses."""

from apev_workspace.core.exceptions import ApiError, InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist


class DirectoryNotEmpty(ApiError):
    status = 400
    error_code = "DIRECTORY_NOT_EMPTY"


__all__ = ["DirectoryNotEmpty", "InvalidParameterValue", "ResourceAlreadyExists", "ResourceDoesNotExist"]
