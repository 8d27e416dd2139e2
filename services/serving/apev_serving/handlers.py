"""Translate: events in -> serving service calls. Delivery (inbox, retries, DLQ) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import (
    EndpointScaleRequested,
    InsightCreated,
    JobRequested,
    RunFinished,
    ServingLatencySampled,
    TenantOffboarded,
    topics,
)
from apev_contracts.envelope import CloudEvent
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx
from apev_serving.offboarding import Offboarding
from apev_serving.retrieval import Retrieval
from apev_serving.service import ServingService
from apev_serving.sql import SqlQueries

# What this service publishes (through the outbox): insights read from an insights run; agent deploy/insights jobs;
# latency samples. The send side of its AsyncAPI document (`make asyncapi`); keep it in step with the
# `new_event`/`follow_up` calls.
PUBLISHES = (InsightCreated, JobRequested, ServingLatencySampled)


def register(
    broker: KafkaBroker, service: ServingService, group: str, sql: SqlQueries, replica_id: str, retrieval: Retrieval
) -> None:
    # Both wait on Databricks (a roll or a resize waits for READY): each step commits before its call.
    @subscriber(broker, topics.RUN_FINISHED, group_id=group, outside_calls=True)
    async def on_run_finished(event: CloudEvent[RunFinished], tx: Tx) -> None:
        await service.on_run_finished(event, tx)

    @subscriber(broker, topics.ENDPOINT_SCALE_REQUESTED, group_id=group, outside_calls=True)
    async def on_endpoint_scale_requested(event: CloudEvent[EndpointScaleRequested], tx: Tx) -> None:
        await service.on_scale_requested(event, tx)

    # An ingest run that fetched documents: refresh the tenant's index. A group of its own, so a long sync never
    # holds up a roll (and the other way round).
    @subscriber(broker, topics.RUN_FINISHED, group_id=f"{group}.retrieval", outside_calls=True)
    async def on_run_finished_index(event: CloudEvent[RunFinished], tx: Tx) -> None:
        await retrieval.on_run_finished(event, tx)

    # The SQL cache is this replica's: a group of its own, so every replica sees every run.finished.
    @subscriber(broker, topics.RUN_FINISHED, group_id=f"{group}.sql-cache.{replica_id}")
    async def on_run_finished_invalidate(event: CloudEvent[RunFinished], tx: Tx) -> None:
        sql.on_run_finished(event)


def register_offboarding(broker: KafkaBroker, offboarding: Offboarding, group: str, replica_id: str) -> None:
    # Endpoints, agent principals, models and rows: waits on Databricks, each step tolerant of "already gone".
    @subscriber(broker, topics.TENANT_OFFBOARDED, group_id=group, outside_calls=True)
    async def on_tenant_offboarded(event: CloudEvent[TenantOffboarded], tx: Tx) -> None:
        await offboarding.on_tenant_offboarded(event, tx)

    # This replica's SQL cache, reader token and cached agents of the tenant: a group per replica, like the cache's.
    @subscriber(broker, topics.TENANT_OFFBOARDED, group_id=f"{group}.sql-cache.{replica_id}")
    async def on_tenant_offboarded_forget(event: CloudEvent[TenantOffboarded], tx: Tx) -> None:
        offboarding.forget(event.data.tenant_id)
