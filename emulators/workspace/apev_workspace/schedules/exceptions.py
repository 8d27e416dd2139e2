"""Schedule errors: Databricks answers a bad schedule with 400 INVALID_PARAMETER_VALUE naming the field."""

from apev_workspace.core.exceptions import InvalidParameterValue

__all__ = ["InvalidParameterValue"]
