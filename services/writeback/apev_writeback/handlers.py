"""Translate: events in -> writeback service calls. Delivery (inbox, retries, DLQ) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import InsightCreated, topics
from apev_contracts.envelope import CloudEvent
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx
from apev_writeback.service import WritebackService


def register(broker: KafkaBroker, service: WritebackService, group: str) -> None:
    @subscriber(broker, topics.INSIGHT_CREATED, group_id=group)
    async def on_insight_created(event: CloudEvent[InsightCreated], tx: Tx) -> None:
        await service.on_insight_created(event)
