"""The single list of Kafka topics this system uses.

Everything that creates, subscribes to or replays a topic reads it from here: the local stack launcher
creates each topic and its `.dlq` twin from this list.
"""

from __future__ import annotations

from typing import Final

DATASOURCE_CREATED: Final = "datasource.created"
JOB_REQUESTED: Final = "job.requested"
RUN_FINISHED: Final = "run.finished"
INSIGHT_CREATED: Final = "insight.created"
COST_SAMPLED: Final = "cost.sampled"
SERVING_LATENCY_SAMPLED: Final = "serving.latency.sampled"
ENDPOINT_SCALE_REQUESTED: Final = "endpoint.scale.requested"
WRITEBACK_OUTCOME: Final = "writeback.outcome"
DATASOURCE_UPDATED: Final = "datasource.updated"
DATASOURCE_REMOVED: Final = "datasource.removed"
TENANT_OFFBOARDED: Final = "tenant.offboarded"
ERASURE_REQUESTED: Final = "erasure.requested"
LINEAGE_EMITTED: Final = "lineage.emitted"

TOPICS: Final[tuple[str, ...]] = (
    DATASOURCE_CREATED,
    JOB_REQUESTED,
    RUN_FINISHED,
    INSIGHT_CREATED,
    COST_SAMPLED,
    SERVING_LATENCY_SAMPLED,
    ENDPOINT_SCALE_REQUESTED,
    WRITEBACK_OUTCOME,
    DATASOURCE_UPDATED,
    DATASOURCE_REMOVED,
    TENANT_OFFBOARDED,
    ERASURE_REQUESTED,
    LINEAGE_EMITTED,
)

DLQ_SUFFIX: Final = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter twin of a topic: `run.finished` -> `run.finished.dlq`."""
    if topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"topic {topic!r} is already a dead-letter topic")
    return topic + DLQ_SUFFIX


def all_topics() -> list[str]:
    """Every topic with its dead-letter twin, in a stable order."""
    return [name for topic in TOPICS for name in (topic, dlq_topic(topic))]
