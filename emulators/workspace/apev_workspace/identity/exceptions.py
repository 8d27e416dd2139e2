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
