"""Permissions errors use the shared codes; kept as a module so the area has the same four roles as the others."""

from apev_workspace.core.exceptions import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist

__all__ = ["InvalidParameterValue", "PermissionDenied", "ResourceDoesNotExist"]
