"""`run.finished`: a Databricks job run reached a terminal state (published once per run and repair attempt
by the jobs service)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from apev_contracts.common import (
    ContractModel,
    Identifier,
    JobKey,
    LongText,
    NumericId,
    StateName,
    TaskKey,
    TenantId,
    Url,
    UtcDatetime,
)
from apev_contracts.events.jobs import MAX_TASKS, Parameters, Tags
from apev_contracts.naming import JobKind

RunOutcome = Literal["success", "failure", "timeout", "canceled", "skipped"]

_CANCELED = frozenset({"CANCELED", "UPSTREAM_CANCELED"})
_SKIPPED = frozenset({"EXCLUDED", "DISABLED", "MAXIMUM_CONCURRENT_RUNS_REACHED"})


def run_outcome(life_cycle_state: str, result_state: str | None) -> RunOutcome:
    """The coarse outcome consumers act on, from the legacy Databricks state.

    SUCCESS -> success; TIMEDOUT -> timeout; CANCELED, UPSTREAM_CANCELED -> canceled; SKIPPED runs and
    EXCLUDED, DISABLED, MAXIMUM_CONCURRENT_RUNS_REACHED -> skipped; anything else (FAILED, INTERNAL_ERROR,
    UPSTREAM_FAILED, SUCCESS_WITH_FAILURES, an unknown state) -> failure.
    """
    if result_state == "SUCCESS":
        return "success"
    if result_state == "TIMEDOUT":
        return "timeout"
    if result_state in _CANCELED:
        return "canceled"
    if life_cycle_state == "SKIPPED" or result_state in _SKIPPED:
        return "skipped"
    return "failure"


class RunState(ContractModel):
    """The legacy `state` block (what most clients read)."""

    life_cycle_state: StateName
    result_state: StateName | None = None
    state_message: LongText = ""


class TerminationDetails(ContractModel):
    code: StateName
    type: StateName
    message: LongText = ""


class RunStatus(ContractModel):
    """The newer `status` block."""

    state: StateName
    termination_details: TerminationDetails | None = None


class TaskRun(ContractModel):
    task_key: TaskKey
    run_id: NumericId | None = None
    attempt_number: Annotated[int, Field(ge=0)] = 0
    state: RunState
    status: RunStatus | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None


class RunFinished(ContractModel):
    """A run (or one repair of it) reached a terminal state."""

    tenant_id: TenantId
    job_id: NumericId
    run_id: NumericId
    repair_attempt: Annotated[int, Field(ge=0)] = 0
    """0 for the original run, n for its n-th repair."""
    kind: JobKind
    key: JobKey
    job_name: Annotated[str, Field(min_length=1, max_length=400)]
    request_id: Identifier | None = None
    """The `job.requested` event id that started the run, when the jobs service knows it."""
    tags: Tags = Field(default_factory=dict)
    job_parameters: Parameters = Field(default_factory=dict)
    state: RunState
    status: RunStatus
    outcome: RunOutcome
    """`run_outcome(state.life_cycle_state, state.result_state)`, so consumers need not interpret states."""
    tasks: Annotated[list[TaskRun], Field(max_length=MAX_TASKS)] = Field(default_factory=list)
    start_time: UtcDatetime
    end_time: UtcDatetime
    run_page_url: Url | None = None

    @model_validator(mode="after")
    def _times_in_order(self) -> Self:
        if self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self
