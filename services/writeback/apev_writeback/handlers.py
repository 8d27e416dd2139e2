"""Translate: events in -> writeback service calls. Delivery (inbox, retries, DLQ, pauses) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import DatasourceCreated, ErasureRequested, InsightCreated, WritebackOutcomeRecorded, topics
from apev_contracts.envelope import CloudEvent
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx
from apev_writeback.service import WritebackService

# What this service publishes (through the outbox): the outcome of each held, approved, rejected or written insight.
# The send side of its AsyncAPI document (`make asyncapi`); keep it in step with the `new_event`/`follow_up` calls.
PUBLISHES = (WritebackOutcomeRecorded,)


def register(broker: KafkaBroker, service: WritebackService, group: str) -> None:
    # outside_calls: one event at a time, the inbox row written last; the service commits each step (the
    # policy's decision, the attempt with its Idempotency-Key) before it calls MCP or Slack.
    @subscriber(broker, topics.INSIGHT_CREATED, group_id=group, outside_calls=True)
    async def on_insight_created(event: CloudEvent[InsightCreated], tx: Tx) -> None:
        await service.on_insight_created(event, tx)  # writeback.outcome goes through the outbox

    @subscriber(broker, topics.DATASOURCE_CREATED, group_id=group + "-datasources")
    async def on_datasource_created(event: CloudEvent[DatasourceCreated], tx: Tx) -> None:
        await service.on_datasource_created(event, tx)

    @subscriber(broker, topics.ERASURE_REQUESTED, group_id=group + "-erasures")
    async def on_erasure_requested(event: CloudEvent[ErasureRequested], tx: Tx) -> None:
        await service.on_erasure_requested(event, tx)  # held/pending ones about the person: rejected, via the outbox
