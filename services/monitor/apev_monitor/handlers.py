"""Translate: events in -> monitor service calls. Delivery (inbox, retries, DLQ) is the runtime's. The
handlers only write state, so they stay batched (but the offboarding one, which queries the warehouse);
notifications are sent by the notifier, not from here."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import (
    CostSampled,
    EndpointScaleRequested,
    LineageEmitted,
    RunFinished,
    ServingLatencySampled,
    TenantOffboarded,
    topics,
)
from apev_contracts.envelope import CloudEvent
from apev_monitor.lineage import LineageStore
from apev_monitor.service import MonitorService
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx

# What this service publishes (through the outbox): cost samples from billing usage; scale-up requests when an
# endpoint's latency rule fires. The send side of its AsyncAPI document (`make asyncapi`); keep it in step with the
# `new_event`/`follow_up` calls.
PUBLISHES = (CostSampled, EndpointScaleRequested)


def register(broker: KafkaBroker, service: MonitorService, group: str) -> None:
    @subscriber(broker, topics.RUN_FINISHED, group_id=group)
    async def on_run_finished(event: CloudEvent[RunFinished], tx: Tx) -> None:
        await service.on_run_finished(event, tx)

    @subscriber(broker, topics.COST_SAMPLED, group_id=group)
    async def on_cost_sampled(event: CloudEvent[CostSampled], tx: Tx) -> None:
        await service.on_cost_sampled(event, tx)

    @subscriber(broker, topics.SERVING_LATENCY_SAMPLED, group_id=group)
    async def on_serving_latency_sampled(event: CloudEvent[ServingLatencySampled], tx: Tx) -> None:
        await service.on_serving_latency_sampled(event, tx)

    # The one handler that calls out (the warehouse): a final cost sample for a tenant that leaves.
    @subscriber(broker, topics.TENANT_OFFBOARDED, group_id=group, outside_calls=True)
    async def on_tenant_offboarded(event: CloudEvent[TenantOffboarded], tx: Tx) -> None:
        await service.on_tenant_offboarded(event, tx)  # cost.sampled through the outbox on `tx`


def register_lineage(broker: KafkaBroker, store: LineageStore, group: str) -> None:
    @subscriber(broker, topics.LINEAGE_EMITTED, group_id=group)
    async def on_lineage_emitted(event: CloudEvent[LineageEmitted], tx: Tx) -> None:
        await store.on_lineage_emitted(event, tx)  # once per (OpenLineage run id, eventType)
