"""Tracking errors, with the codes the MLflow REST API uses on Databricks."""

from apev_workspace.core.exceptions import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)


class ExperimentNotFound(ResourceDoesNotExist):
    pass


class RunNotFound(ResourceDoesNotExist):
    pass


__all__ = [
    "ExperimentNotFound",
    "InvalidParameterValue",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "ResourceDoesNotExist",
    "RunNotFound",
]
