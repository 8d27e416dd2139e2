"""Translate: events in -> ingest service calls. Delivery (inbox, retries, DLQ) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import (
    DatasourceCreated,
    DatasourceRemoved,
    DatasourceUpdated,
    ErasureRequested,
    JobRequested,
    RunFinished,
    TenantOffboarded,
    topics,
)
from apev_contracts.envelope import CloudEvent
from apev_ingest.service import IngestService
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx

# What this service publishes (through the outbox): a data source's first and later ingestion runs. The send side of
# its AsyncAPI document (`make asyncapi`); keep it in step with the `new_event`/`follow_up` calls.
PUBLISHES = (JobRequested,)


def register(broker: KafkaBroker, service: IngestService, group: str) -> None:
    # Provisioning calls Databricks and MCP: one event at a time, each step committed before its call.
    @subscriber(broker, topics.DATASOURCE_CREATED, group_id=group, outside_calls=True)
    async def on_datasource_created(event: CloudEvent[DatasourceCreated], tx: Tx) -> None:
        await service.on_datasource_created(event, tx)  # job.requested goes through the outbox on `tx`

    @subscriber(broker, topics.RUN_FINISHED, group_id=group)
    async def on_run_finished(event: CloudEvent[RunFinished], tx: Tx) -> None:
        await service.on_run_finished(event, tx)

    # The tenant lifecycle: each step committed before its outside call, resumed on redelivery.
    @subscriber(broker, topics.DATASOURCE_UPDATED, group_id=group, outside_calls=True)
    async def on_datasource_updated(event: CloudEvent[DatasourceUpdated], tx: Tx) -> None:
        await service.lifecycle.on_datasource_updated(event, tx)  # job.requested (the new spec) via the outbox

    @subscriber(broker, topics.DATASOURCE_REMOVED, group_id=group, outside_calls=True)
    async def on_datasource_removed(event: CloudEvent[DatasourceRemoved], tx: Tx) -> None:
        await service.lifecycle.on_datasource_removed(event, tx)  # job.requested (delete) via the outbox

    @subscriber(broker, topics.TENANT_OFFBOARDED, group_id=group, outside_calls=True)
    async def on_tenant_offboarded(event: CloudEvent[TenantOffboarded], tx: Tx) -> None:
        await service.lifecycle.on_tenant_offboarded(event, tx)  # the jobs service deletes the tenant's jobs

    @subscriber(broker, topics.ERASURE_REQUESTED, group_id=group, outside_calls=True)
    async def on_erasure_requested(event: CloudEvent[ErasureRequested], tx: Tx) -> None:
        await service.erasure.on_erasure_requested(event, tx)  # the audit record, verified by a follow-up query
