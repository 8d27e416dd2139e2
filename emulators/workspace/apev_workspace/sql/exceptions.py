"""SQL errors. A failed statement is not an HTTP error: it is HTTP 200 with `status.state` FAILED and
`status.error {error_code, message}`, where `error_code` is the Statement Execution API's `ServiceErrorCode`
and the message starts with Databricks' error class (`[TABLE_OR_VIEW_NOT_FOUND] ...`).
"""

from __future__ import annotations

from apev_workspace.core.exceptions import (
    ApiError,
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceDoesNotExist,
)

__all__ = ["ApiError", "InvalidParameterValue", "InvalidState", "PermissionDenied", "ResourceDoesNotExist", "SqlError"]


class SqlError(Exception):
    def __init__(self, error_class: str, message: str, *, error_code: str = "BAD_REQUEST", sqlstate: str = "42000"):
        self.error_class = error_class
        self.error_code = error_code
        self.sqlstate = sqlstate
        self.detail = message
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"[{self.error_class}] {self.detail} SQLSTATE: {self.sqlstate}"


def unsupported(construct: str) -> SqlError:
    return SqlError(
        "UNSUPPORTED_FEATURE",
        f"{construct} is not supported by the local workspace's SQL engine (DuckDB).",
        sqlstate="0A000",
    )


def insufficient(detail: str) -> SqlError:
    return SqlError(
        "INSUFFICIENT_PERMISSIONS", f"Insufficient privileges: PERMISSION_DENIED: {detail}", sqlstate="42501"
    )
