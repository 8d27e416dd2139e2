"""Errors of the fault admin endpoint (plain Databricks-shaped errors)."""

from apev_workspace.core.exceptions import InvalidParameterValue, ResourceDoesNotExist

__all__ = ["InvalidParameterValue", "ResourceDoesNotExist"]
