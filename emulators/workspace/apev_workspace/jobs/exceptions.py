"""Jobs errors: the shared Databricks codes, named for what the Jobs API uses them for."""

from apev_workspace.core.exceptions import (
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceDoesNotExist,
)


class JobNotFound(ResourceDoesNotExist):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"Job {job_id} does not exist.")


class RunNotFound(ResourceDoesNotExist):
    def __init__(self, run_id: object) -> None:
        super().__init__(f"Run {run_id} does not exist.")


__all__ = ["InvalidParameterValue", "InvalidState", "JobNotFound", "PermissionDenied", "RunNotFound"]
