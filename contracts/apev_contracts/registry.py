"""Topic <-> payload model <-> CloudEvents `type` (with its major version).

Types read `com.agentprovision.<topic>.v<major>`. A topic carries one current major version; within it,
changes are additive only (the committed JSON Schemas and `tests/test_schemas.py` hold that line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel

from apev_contracts import topics
from apev_contracts.errors import UnknownEventType, UnsupportedVersion
from apev_contracts.events import (
    CostSampled,
    DatasourceCreated,
    DatasourceRemoved,
    DatasourceUpdated,
    EndpointScaleRequested,
    ErasureRequested,
    InsightCreated,
    JobRequested,
    LineageEmitted,
    RunFinished,
    ServingLatencySampled,
    TenantOffboarded,
    WritebackOutcomeRecorded,
)

TYPE_PREFIX: Final = "com.agentprovision."
_TYPE = re.compile(r"^com\.agentprovision\.(?P<topic>[a-z0-9][a-z0-9._-]*?)\.v(?P<major>[0-9]+)$")


def event_type(topic: str, major: int) -> str:
    """`com.agentprovision.<topic>.v<major>`."""
    return f"{TYPE_PREFIX}{topic}.v{major}"


def parse_event_type(ce_type: str) -> tuple[str, int] | None:
    """(topic, major) of a well-formed type, None otherwise."""
    match = _TYPE.fullmatch(ce_type)
    return (match.group("topic"), int(match.group("major"))) if match else None


@dataclass(frozen=True)
class EventSpec:
    """One registered event: the topic it travels on, its major version and its payload model."""

    topic: str
    major: int
    model: type[BaseModel]

    @property
    def type(self) -> str:
        return event_type(self.topic, self.major)


_SPECS: Final[tuple[EventSpec, ...]] = (
    EventSpec(topics.DATASOURCE_CREATED, 1, DatasourceCreated),
    EventSpec(topics.JOB_REQUESTED, 1, JobRequested),
    EventSpec(topics.RUN_FINISHED, 1, RunFinished),
    EventSpec(topics.INSIGHT_CREATED, 1, InsightCreated),
    EventSpec(topics.COST_SAMPLED, 1, CostSampled),
    EventSpec(topics.SERVING_LATENCY_SAMPLED, 1, ServingLatencySampled),
    EventSpec(topics.ENDPOINT_SCALE_REQUESTED, 1, EndpointScaleRequested),
    EventSpec(topics.WRITEBACK_OUTCOME, 1, WritebackOutcomeRecorded),
    EventSpec(topics.DATASOURCE_UPDATED, 1, DatasourceUpdated),
    EventSpec(topics.DATASOURCE_REMOVED, 1, DatasourceRemoved),
    EventSpec(topics.TENANT_OFFBOARDED, 1, TenantOffboarded),
    EventSpec(topics.ERASURE_REQUESTED, 1, ErasureRequested),
    EventSpec(topics.LINEAGE_EMITTED, 1, LineageEmitted),
)
_BY_TYPE: Final = {spec.type: spec for spec in _SPECS}
_BY_TOPIC: Final = {spec.topic: spec for spec in _SPECS}
_BY_MODEL: Final = {spec.model: spec for spec in _SPECS}


def all_specs() -> tuple[EventSpec, ...]:
    """Every registered event, in the order of `topics.TOPICS`."""
    return _SPECS


def spec_for_type(ce_type: str) -> EventSpec:
    """The spec of a CloudEvents `type`; `UnsupportedVersion` for a known topic in another major version,
    `UnknownEventType` for anything else."""
    spec = _BY_TYPE.get(ce_type)
    if spec is not None:
        return spec
    parsed = parse_event_type(ce_type)
    if parsed and parsed[0] in _BY_TOPIC:
        known = _BY_TOPIC[parsed[0]]
        raise UnsupportedVersion(
            f"{ce_type!r} is major version {parsed[1]}; this contracts package has {known.type!r}", field="type"
        )
    raise UnknownEventType(f"{ce_type[:200]!r} is not a registered event type", field="type")


def spec_for_topic(topic: str) -> EventSpec:
    """The spec of a topic (its `.dlq` twin maps to the same spec); `UnknownEventType` when unregistered."""
    base = topic.removesuffix(topics.DLQ_SUFFIX)
    spec = _BY_TOPIC.get(base)
    if spec is None:
        raise UnknownEventType(f"topic {topic!r} is not registered", field="topic")
    return spec


def spec_for_model(model_cls: type[BaseModel]) -> EventSpec:
    """The spec of a payload model class; `UnknownEventType` for a model that is not an event."""
    spec = _BY_MODEL.get(model_cls)
    if spec is None:
        raise UnknownEventType(f"{model_cls.__qualname__} is not a registered event model", field="data")
    return spec
