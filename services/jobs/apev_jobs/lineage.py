"""OpenLineage run events of the runs the jobs service tracks (built with openlineage-python).

    started(run, params, at)            START of the job's run (when the service tracked it)
    finished(run, payload, catalog)     per task: START and COMPLETE/FAIL/ABORT (parent: the job's run), then the
                                        job's COMPLETE (success), FAIL (failure, timeout) or ABORT (canceled, skipped)

Job namespace: `databricks://<workspace host>`; job name: the stable name `ap:<tenant>:<kind>:<key>` (ARCHITECTURE
§8), a task's `<job name>.<task key>`. Datasets come from the pipeline's own description of its flow
(`apev_pipeline.lineage`); schema facets from Unity Catalog where it has the table (else the pipeline's columns),
row counts of the outputs of a successful run from `count(*)`. Run ids are UUIDv5 of (Databricks run id, repair
attempt) and of (task run id, attempt): redelivery and replicas derive the same ids, and the event id of each
`lineage.emitted` is derived from (run id, eventType).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde

from apev_contracts import LineageEmitted, RunFinished
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.events.runs import run_outcome
from apev_contracts.ids import deterministic_id
from apev_pipeline.lineage import Dataset, JobLineage, job_lineage, mcp_namespace

PRODUCER = "https://github.com/agentprovision/apev/tree/main/services/jobs"
SOURCE = "/apev/jobs"

_STATE = {
    "success": RunState.COMPLETE,
    "failure": RunState.FAIL,
    "timeout": RunState.FAIL,
    "canceled": RunState.ABORT,
    "skipped": RunState.ABORT,
}


def namespace(host: str) -> str:
    """`databricks://<host>` (OpenLineage's naming of a Databricks workspace)."""
    return "databricks://" + (urlsplit(host).netloc or host)


def run_uuid(run_id: str, attempt: int) -> str:
    return deterministic_id("openlineage.run", run_id, str(attempt))


@dataclass(frozen=True)
class RunRef:
    """What identifies a tracked run to lineage."""

    tenant_id: str
    job_name: str
    kind: str
    run_id: str
    attempt: int = 0
    correlation_id: str | None = None


@dataclass
class Catalog:
    """What Unity Catalog said about the tables (filled by the service before the events are built)."""

    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)


class LineageBuilder:
    def __init__(self, workspace_host: str) -> None:
        self.ns = namespace(workspace_host)

    def lineage(self, ref: RunRef, params: Mapping[str, str]) -> JobLineage:
        return job_lineage(ref.tenant_id, ref.kind, dict(params))

    # ---------------------------------------------------------------- datasets
    def _ns(self, ref: RunRef, d: Dataset) -> str:
        return self.ns if d.workspace else mcp_namespace(ref.tenant_id)

    def _schema(self, d: Dataset, catalog: Catalog) -> dict[str, Any]:
        cols = catalog.columns.get(d.table or "") or list(d.columns)
        if not cols:
            return {}
        fields = [schema_dataset.SchemaDatasetFacetFields(name=n, type=t or None) for n, t in cols]
        return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}

    def _exists(self, d: Dataset, catalog: Catalog) -> bool:
        """False for a table Unity Catalog does not list in a schema it was read for (a gold table whose sources
        are absent is not built; a silver table of another data source may not exist yet)."""
        if not d.table:
            return True
        schema = d.table.rsplit(".", 1)[0] + "."
        return d.table in catalog.columns or not any(t.startswith(schema) for t in catalog.columns)

    def _inputs(self, ref: RunRef, items: Sequence[Dataset], catalog: Catalog) -> list[InputDataset]:
        return [
            InputDataset(self._ns(ref, d), d.name, facets=self._schema(d, catalog))
            for d in items
            if self._exists(d, catalog)
        ]

    def _outputs(self, ref: RunRef, items: Sequence[Dataset], catalog: Catalog) -> list[OutputDataset]:
        out = []
        for d in [d for d in items if self._exists(d, catalog)]:
            stats: dict[str, Any] = {}
            count = catalog.row_counts.get(d.table or "")
            if count is not None:
                stats["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=count
                )
            out.append(
                OutputDataset(self._ns(ref, d), d.name, facets=self._schema(d, catalog), outputFacets=stats or None)
            )
        return out

    # ---------------------------------------------------------------- events
    def _job(self, name: str, job_type: str) -> Job:
        facet = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DATABRICKS", jobType=job_type)
        return Job(namespace=self.ns, name=name, facets={"jobType": facet})

    def _event(
        self,
        state: RunState,
        at: datetime,
        job: Job,
        run: Run,
        inputs: list[InputDataset],
        outputs: list[OutputDataset],
    ) -> RunEvent:
        return RunEvent(
            eventType=state,
            eventTime=at.isoformat(),
            run=run,
            job=job,
            producer=PRODUCER,
            inputs=inputs,
            outputs=outputs,
        )

    def started(self, ref: RunRef, params: Mapping[str, str], at: datetime) -> list[RunEvent]:
        lin = self.lineage(ref, params)
        run = Run(runId=run_uuid(ref.run_id, ref.attempt))
        catalog = Catalog()
        return [
            self._event(
                RunState.START,
                at,
                self._job(ref.job_name, "JOB"),
                run,
                self._inputs(ref, lin.inputs(), catalog),
                self._outputs(ref, lin.outputs(), catalog),
            )
        ]

    def finished(self, ref: RunRef, payload: RunFinished, catalog: Catalog) -> list[RunEvent]:
        lin = self.lineage(ref, payload.job_parameters)
        parent_id = run_uuid(ref.run_id, ref.attempt)
        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent_id), job=parent_run.Job(namespace=self.ns, name=ref.job_name)
        )
        events: list[RunEvent] = []
        seen: set[str] = set()
        for task in payload.tasks:
            seen.add(task.task_key)
            datasets = lin.tasks.get(task.task_key)
            outcome = run_outcome(task.state.life_cycle_state, task.state.result_state)
            task_id = deterministic_id("openlineage.task", task.run_id or f"{ref.run_id}/{task.task_key}",
                                       str(task.attempt_number), str(ref.attempt))  # fmt: skip
            facets: dict[str, Any] = {"parent": parent}
            if outcome in ("failure", "timeout") and task.state.state_message:
                facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                    message=task.state.state_message[:2000], programmingLanguage="PYTHON"
                )
            events += self._pair(ref, f"{ref.job_name}.{task.task_key}", task_id, facets, outcome,
                                 task.start_time or payload.start_time, task.end_time or payload.end_time,
                                 datasets.inputs if datasets else (), datasets.outputs if datasets else (),
                                 catalog)  # fmt: skip
        if payload.outcome == "success":
            # Steps that are not Databricks tasks (the MCP write-back of agent insights) follow a successful run.
            for key, datasets in lin.tasks.items():
                if key not in seen:
                    task_id = deterministic_id("openlineage.step", ref.run_id, key, str(ref.attempt))
                    events += self._pair(ref, f"{ref.job_name}.{key}", task_id, {"parent": parent}, "success",
                                         payload.end_time, payload.end_time, datasets.inputs, datasets.outputs,
                                         catalog)  # fmt: skip
        job_facets: dict[str, Any] = {}
        state = _STATE[payload.outcome]
        if state is RunState.FAIL:
            job_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=(payload.state.state_message or payload.outcome)[:2000], programmingLanguage="PYTHON"
            )
        success = payload.outcome == "success"
        events.append(
            self._event(
                state,
                payload.end_time,
                self._job(ref.job_name, "JOB"),
                Run(runId=parent_id, facets=job_facets),
                self._inputs(ref, lin.inputs(), catalog),
                self._outputs(ref, lin.outputs() if success else [], catalog),
            )
        )
        return events

    def _pair(
        self,
        ref: RunRef,
        name: str,
        run_id: str,
        facets: dict[str, Any],
        outcome: str,
        start: datetime,
        end: datetime,
        inputs: Sequence[Dataset],
        outputs: Sequence[Dataset],
        catalog: Catalog,
    ) -> list[RunEvent]:
        """START and the terminal event of one task (outputs only when it completed)."""
        job = self._job(name, "TASK")
        ins = self._inputs(ref, inputs, catalog)
        start_event = self._event(RunState.START, start, job, Run(runId=run_id, facets={"parent": facets["parent"]}),
                                  ins, [])  # fmt: skip
        state = _STATE.get(outcome, RunState.ABORT)
        outs = self._outputs(ref, outputs, catalog) if state is RunState.COMPLETE else []
        return [start_event, self._event(state, max(end, start), job, Run(runId=run_id, facets=facets), ins, outs)]

    def tables_of(self, ref: RunRef, params: Mapping[str, str]) -> tuple[set[tuple[str, str]], list[str]]:
        """(catalog, schema) pairs whose columns to read, and the output tables to count."""
        lin = self.lineage(ref, params)
        tables = {d.table for t in lin.tasks.values() for d in (*t.inputs, *t.outputs) if d.table}
        schemas = {(t.split(".")[0], t.split(".")[1]) for t in tables if t.count(".") == 2}
        outputs = sorted({d.table for d in lin.outputs() if d.table and d.table.count(".") == 2})
        return schemas, outputs


def cloud_event(ref: RunRef, ol: RunEvent) -> CloudEvent[LineageEmitted]:
    """The `lineage.emitted` event of one OpenLineage run event; its id is derived from (run id, eventType)."""
    body = cast(dict[str, Any], Serde.to_dict(ol))
    kind = ol.eventType.value if ol.eventType is not None else "OTHER"
    payload = LineageEmitted(
        tenant_id=ref.tenant_id,
        event_type=kind,
        run_id=ol.run.runId,
        job_namespace=ol.job.namespace,
        job_name=ol.job.name,
        openlineage=body,
    )
    event_id = deterministic_id("lineage.emitted", ol.run.runId, kind)
    return new_event(
        payload,
        tenant_id=ref.tenant_id,
        source=SOURCE,
        id=event_id,
        correlation_id=ref.correlation_id or event_id,
        subject=f"runs/{ref.run_id}",
    )
