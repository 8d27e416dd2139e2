"""Identity errors. SCIM answers carry the SCIM fields too, which the SDK folds into its message."""

from __future__ import annotations

from typing import Any

from apev_workspace.core.exceptions import ApiError, ResourceAlreadyExists, ResourceDoesNotExist


class ScimError(ApiError):
    scim_type = ""

    def body(self) -> dict[str, Any]:
        return {
            "error_code": self.error_code,
            "message": self.message,
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "detail": self.message,
            "scimType": self.scim_type,
            "status": str(self.status),
        }


class ScimNotFound(ScimError, ResourceDoesNotExist):
    pass


class ScimConflict(ScimError, ResourceAlreadyExists):
    scim_type = "uniqueness"


class InvalidClient(ApiError):
    """The OAuth token endpoint's refusal, in OAuth's shape (RFC 6749 §5.2) as Databricks answers it."""

    status = 401
    error_code = "invalid_client"

    def body(self) -> dict[str, Any]:
        return {"error": self.error_code, "error_description": self.message}


class UnsupportedGrantType(InvalidClient):
    status = 400
    error_code = "unsupported_grant_type"


class InvalidRequest(InvalidClient):
    status = 400
    error_code = "invalid_request"
