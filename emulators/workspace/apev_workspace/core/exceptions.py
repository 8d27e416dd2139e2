"""Databricks' error shape: `{"error_code": ..., "message": ...}` with the status the real service uses.

Every API area raises these (or subclasses in its own `exceptions.py`); the HTTP adapter turns them into
responses, and the databricks-sdk maps them back to its own exception classes by `error_code`, then status.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status: int = 400
    error_code: str = "INVALID_PARAMETER_VALUE"

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


class InvalidParameterValue(ApiError):
    status = 400
    error_code = "INVALID_PARAMETER_VALUE"


class InvalidState(ApiError):
    status = 400
    error_code = "INVALID_STATE"


class MalformedRequest(ApiError):
    status = 400
    error_code = "MALFORMED_REQUEST"


class Unauthenticated(ApiError):
    status = 401
    error_code = "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    status = 403
    error_code = "PERMISSION_DENIED"


class ResourceDoesNotExist(ApiError):
    status = 404
    error_code = "RESOURCE_DOES_NOT_EXIST"


class EndpointNotFound(ApiError):
    status = 404
    error_code = "ENDPOINT_NOT_FOUND"


class ResourceAlreadyExists(ApiError):
    status = 409
    error_code = "RESOURCE_ALREADY_EXISTS"


class RequestLimitExceeded(ApiError):
    status = 429
    error_code = "REQUEST_LIMIT_EXCEEDED"


class TemporarilyUnavailable(ApiError):
    status = 503
    error_code = "TEMPORARILY_UNAVAILABLE"


class InternalError(ApiError):
    status = 500
    error_code = "INTERNAL_ERROR"


def require(body: dict[str, Any], field: str) -> Any:
    """The value of a required request field, or the error Databricks gives when it is missing."""
    value = body.get(field)
    if value is None or value == "":
        raise InvalidParameterValue(f"Missing required field: {field}")
    return value
