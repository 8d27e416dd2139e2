"""`lineage.emitted`: one OpenLineage run event (START, COMPLETE, FAIL, ABORT) of a run the jobs service tracks.

`openlineage` is the OpenLineage `RunEvent` JSON itself (spec 2-0-2: eventTime, eventType, producer, schemaURL,
run, job, inputs, outputs), so any OpenLineage consumer can read it; the other fields repeat what consumers
filter on without parsing it. The event id is derived from (OpenLineage run id, eventType): redelivery never mints
a second copy.
"""

from __future__ import annotations

import json
from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, Field, JsonValue, StringConstraints, model_validator

from apev_contracts.common import ContractModel, TenantId

LineageEventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
MAX_LINEAGE_BYTES: Final = 262_144
"""A run event with the schema facets of every table an ingestion run touches stays far below this."""

RunUuid = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
LineageName = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


def _bounded(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    if size > MAX_LINEAGE_BYTES:
        raise ValueError(f"{size} bytes of OpenLineage JSON, more than the {MAX_LINEAGE_BYTES} allowed")
    return value


class LineageEmitted(ContractModel):
    """An OpenLineage run event of one tracked run (published by the jobs service through its outbox)."""

    tenant_id: TenantId
    event_type: LineageEventType
    run_id: RunUuid
    """The OpenLineage run id (a UUID derived from the Databricks run id and repair attempt)."""
    job_namespace: LineageName
    """OpenLineage job namespace: the Databricks workspace host (e.g. `https://adb-1.azuredatabricks.net`)."""
    job_name: LineageName
    """The job's stable name `ap:<tenant>:<kind>:<key>` (ARCHITECTURE §8)."""
    openlineage: Annotated[dict[str, JsonValue], Field(min_length=1), AfterValidator(_bounded)]
    """The OpenLineage RunEvent as JSON (the spec's field names: eventTime, eventType, run, job, inputs, ...)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ol = self.openlineage
        run = ol.get("run")
        job = ol.get("job")
        if ol.get("eventType") != self.event_type:
            raise ValueError(f"openlineage.eventType {ol.get('eventType')!r} is not event_type {self.event_type!r}")
        if not isinstance(run, dict) or run.get("runId") != self.run_id:
            raise ValueError("openlineage.run.runId must equal run_id")
        if not isinstance(job, dict) or job.get("name") != self.job_name or job.get("namespace") != self.job_namespace:
            raise ValueError("openlineage.job must carry job_namespace and job_name")
        return self
