"""Registry errors, with the codes Unity Catalog and the MLflow registry use."""

from apev_workspace.core.exceptions import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)


class ModelNotFound(ResourceDoesNotExist):
    pass


class VersionNotFound(ResourceDoesNotExist):
    pass


__all__ = [
    "InvalidParameterValue",
    "ModelNotFound",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "VersionNotFound",
]
