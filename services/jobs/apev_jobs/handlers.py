"""Translate: events in -> jobs service calls. Delivery (inbox, retries, DLQ) is the runtime's."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from apev_contracts import JobRequested, LineageEmitted, RunFinished, TenantOffboarded, topics
from apev_contracts.envelope import CloudEvent
from apev_jobs.service import JobsService
from apev_runtime.broker import subscriber
from apev_runtime.delivery.middleware import Tx

# The delivery kit's `outside_calls` mode: the event is handled alone, its inbox row written last, and the
# service commits each step (request recorded with its token) before its Databricks call.
OUTSIDE_CALLS = True

# What this service publishes (through the outbox): requests accepted by its HTTP API (published for itself); every
# tracked run's end; the OpenLineage events of every tracked run (JOBS_LINEAGE_TRANSPORT=kafka). The send side of
# its AsyncAPI document (`make asyncapi`); keep it in step with the `new_event`/`follow_up` calls.
PUBLISHES = (JobRequested, RunFinished, LineageEmitted)


def register(broker: KafkaBroker, service: JobsService, group: str) -> None:
    @subscriber(broker, topics.JOB_REQUESTED, group_id=group, outside_calls=OUTSIDE_CALLS)
    async def on_job_requested(event: CloudEvent[JobRequested], tx: Tx) -> None:
        await service.on_job_requested(event, tx)  # run.finished follows from the webhook, not from here

    @subscriber(broker, topics.TENANT_OFFBOARDED, group_id=group, outside_calls=OUTSIDE_CALLS)
    async def on_tenant_offboarded(event: CloudEvent[TenantOffboarded], tx: Tx) -> None:
        await service.on_tenant_offboarded(event, tx)  # every job of the tenant: runs cancelled, job deleted
