"""The payload models of every topic, one module per concern."""

from apev_contracts.events.cost import CostSampled
from apev_contracts.events.datasource import DatasourceCreated, OutsideSystem
from apev_contracts.events.insight import InsightCreated
from apev_contracts.events.jobs import (
    JobAction,
    JobParameter,
    JobRequested,
    JobSpec,
    NotebookTask,
    PythonTask,
    SqlTask,
    TaskDependency,
    TaskSpec,
)
from apev_contracts.events.lifecycle import DatasourceRemoved, DatasourceUpdated, ErasureRequested, TenantOffboarded
from apev_contracts.events.lineage import LineageEmitted, LineageEventType
from apev_contracts.events.runs import (
    RunFinished,
    RunOutcome,
    RunState,
    RunStatus,
    TaskRun,
    TerminationDetails,
    run_outcome,
)
from apev_contracts.events.serving import (
    LATENCY_BUCKET_BOUNDS_MS,
    EndpointScaleRequested,
    ServingLatencySampled,
    merge_buckets,
    quantile_ms,
)
from apev_contracts.events.writeback import DecisionVia, WritebackOutcome, WritebackOutcomeRecorded

__all__ = [
    "LATENCY_BUCKET_BOUNDS_MS",
    "CostSampled",
    "DatasourceCreated",
    "DatasourceRemoved",
    "DatasourceUpdated",
    "DecisionVia",
    "EndpointScaleRequested",
    "ErasureRequested",
    "InsightCreated",
    "JobAction",
    "JobParameter",
    "JobRequested",
    "JobSpec",
    "LineageEmitted",
    "LineageEventType",
    "NotebookTask",
    "OutsideSystem",
    "PythonTask",
    "RunFinished",
    "RunOutcome",
    "RunState",
    "RunStatus",
    "ServingLatencySampled",
    "SqlTask",
    "TaskDependency",
    "TaskRun",
    "TaskSpec",
    "TenantOffboarded",
    "TerminationDetails",
    "WritebackOutcome",
    "WritebackOutcomeRecorded",
    "merge_buckets",
    "quantile_ms",
    "run_outcome",
]
