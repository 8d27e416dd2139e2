"""AgentProvision event contracts: the CloudEvents envelope, the topic registry and every event model.

Pydantic and the standard library only; `EventPublisher` (in `apev_contracts.publisher`) needs the `kafka`
extra and is not imported here.
"""

from apev_contracts.common import Schedule
from apev_contracts.envelope import CloudEvent, KafkaRecord, decode, encode, new_event, traceparent_of
from apev_contracts.errors import (
    ContractError,
    InvalidPayload,
    MalformedEnvelope,
    TopicMismatch,
    UnknownEventType,
    UnsupportedVersion,
)
from apev_contracts.events import (
    LATENCY_BUCKET_BOUNDS_MS,
    CostSampled,
    DatasourceCreated,
    EndpointScaleRequested,
    InsightCreated,
    JobAction,
    JobParameter,
    JobRequested,
    JobSpec,
    NotebookTask,
    PythonTask,
    RunFinished,
    RunState,
    RunStatus,
    ServingLatencySampled,
    SqlTask,
    TaskDependency,
    TaskRun,
    TaskSpec,
    TerminationDetails,
    WritebackOutcomeRecorded,
    run_outcome,
)
from apev_contracts.registry import EventSpec, all_specs, spec_for_model, spec_for_topic, spec_for_type

__all__ = [
    "LATENCY_BUCKET_BOUNDS_MS",
    "CloudEvent",
    "ContractError",
    "CostSampled",
    "DatasourceCreated",
    "EndpointScaleRequested",
    "EventSpec",
    "InsightCreated",
    "InvalidPayload",
    "JobAction",
    "JobParameter",
    "JobRequested",
    "JobSpec",
    "KafkaRecord",
    "MalformedEnvelope",
    "NotebookTask",
    "PythonTask",
    "RunFinished",
    "RunState",
    "RunStatus",
    "Schedule",
    "ServingLatencySampled",
    "SqlTask",
    "TaskDependency",
    "TaskRun",
    "TaskSpec",
    "TerminationDetails",
    "TopicMismatch",
    "UnknownEventType",
    "UnsupportedVersion",
    "WritebackOutcomeRecorded",
    "all_specs",
    "decode",
    "encode",
    "new_event",
    "run_outcome",
    "spec_for_model",
    "spec_for_topic",
    "spec_for_type",
    "traceparent_of",
]
