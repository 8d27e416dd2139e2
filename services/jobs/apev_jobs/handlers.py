"""Translate: events in -> jobs service calls. Delivery (inbox, retries, DLQ) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import JobRequested, topics
from apev_contracts.envelope import CloudEvent
from apev_jobs.service import JobsService
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx

# The delivery kit's `outside_calls` mode (event handled alone, inbox row written last, the handler may commit
# steps before its Databricks calls). Until the kit has it, every step commits once, with the inbox row.
OUTSIDE_CALLS = False


def register(broker: KafkaBroker, service: JobsService, group: str) -> None:
    @subscriber(broker, topics.JOB_REQUESTED, group_id=group)
    async def on_job_requested(event: CloudEvent[JobRequested], tx: Tx) -> None:
        await service.on_job_requested(event, tx)  # run.finished follows from the webhook, not from here
