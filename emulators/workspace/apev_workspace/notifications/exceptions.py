"""Notification destination errors in Databricks' codes."""

from apev_workspace.core.exceptions import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist


class DestinationNotFound(ResourceDoesNotExist):
    def __init__(self, destination_id: object) -> None:
        super().__init__(f"Notification destination {destination_id} does not exist.")


__all__ = ["DestinationNotFound", "InvalidParameterValue", "PermissionDenied"]
