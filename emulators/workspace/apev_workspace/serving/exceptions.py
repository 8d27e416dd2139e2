"""Serving errors with the codes and statuses Databricks Model Serving answers."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)


class EndpointNotFound(ResourceDoesNotExist):
    pass


class ResourceConflict(ApiError):
    status = 409
    error_code = "RESOURCE_CONFLICT"


class BadRequest(ApiError):
    status = 400
    error_code = "BAD_REQUEST"


class ModelError(BadRequest):
    """The model raised: Databricks answers 400 with the error and the model's stack trace."""

    def __init__(self, message: str, stack_trace: str) -> None:
        super().__init__(message)
        self.stack_trace = stack_trace

    def body(self) -> dict[str, Any]:
        return {**super().body(), "stack_trace": self.stack_trace}


class Overloaded(ApiError):
    status = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class WorkerUnavailable(ApiError):
    """A worker went away under a request (scaled down, crashed): transient, clients retry."""

    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class WorkerFailed(ApiError):
    status = 500
    error_code = "INTERNAL_ERROR"


__all__ = [
    "BadRequest",
    "EndpointNotFound",
    "InvalidParameterValue",
    "ModelError",
    "Overloaded",
    "PermissionDenied",
    "ResourceAlreadyExists",
    "ResourceConflict",
    "WorkerFailed",
    "WorkerUnavailable",
]
