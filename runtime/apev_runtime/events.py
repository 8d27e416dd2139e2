"""Events caused by other events: same tenant, same correlation id, an id derived from the cause (§8).

    out = follow_up(event, JobRequested(...), source="apev/ingest", parts=(datasource_id,))
    await outbox.add(tx, out, traceparent=current_traceparent())

A redelivered cause yields the same follow-up id, so the outbox keeps it once and consumers' inboxes
recognise it; the correlation id ties the chain together in logs and traces.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.ids import caused_event_id
from apev_contracts.registry import spec_for_model


def follow_up(
    cause: CloudEvent[Any],
    data: BaseModel,
    *,
    source: str,
    parts: tuple[str, ...] = (),
    subject: str | None = None,
) -> CloudEvent[Any]:
    """The event `data` caused by `cause`. `parts` tell apart several follow-ups of one kind from one cause."""
    topic = spec_for_model(type(data)).topic
    return new_event(
        data,
        tenant_id=cause.tenantid,
        source=source,
        correlation_id=cause.correlationid,
        subject=subject,
        id=caused_event_id(topic, cause.id, *parts),
    )
