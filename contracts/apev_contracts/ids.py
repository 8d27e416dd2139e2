"""Deterministic event ids: an event caused by another event, a run or a row gets an id derived from its
cause, so a redelivery or a re-run of the producer never mints a new id (ARCHITECTURE §8)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Final

from apev_contracts.naming import validate_tenant_id

# Fixed forever: changing it changes every derived id and defeats every inbox.
PROJECT_NAMESPACE: Final = uuid.UUID("1d9ec73f-ae22-4b20-909b-765db7744d68")


def deterministic_id(*parts: str) -> str:
    """UUIDv5 (as a string) of the parts in the project namespace. The parts are JSON-encoded as a list, so
    `("a:b", "c")` and `("a", "b:c")` give different ids."""
    if not parts:
        raise ValueError("deterministic_id needs at least one part")
    for i, part in enumerate(parts):
        if not isinstance(part, str):
            raise TypeError(f"deterministic_id part {i} must be a str, got {type(part).__name__}")
    return str(uuid.uuid5(PROJECT_NAMESPACE, json.dumps(list(parts), ensure_ascii=False)))


def caused_event_id(topic: str, cause_id: str, *parts: str) -> str:
    """Id of the `topic` event caused by the event (or entity) `cause_id`, e.g. the `job.requested` an
    ingest consumer publishes for one `datasource.created`."""
    return deterministic_id("caused", topic, cause_id, *parts)


def run_finished_id(run_id: str, repair_attempt: int) -> str:
    """Id of `run.finished` for one run and repair attempt (0 = the original run)."""
    if repair_attempt < 0:
        raise ValueError("repair_attempt must be >= 0")
    return deterministic_id("run.finished", run_id, str(repair_attempt))


def cost_sample_id(tenant_id: str, usage_date: date | str, sku: str, revision: str | int) -> str:
    """Id of one `cost.sampled` (tenant, usage date, SKU) at one revision: a late correction of the same day
    publishes a new revision, hence a new id."""
    day = usage_date.isoformat() if isinstance(usage_date, date) else date.fromisoformat(usage_date).isoformat()
    return deterministic_id("cost.sampled", validate_tenant_id(tenant_id), day, sku, str(revision))


def insight_id(tenant_id: str, agent_id: str, row_id: str) -> str:
    """Id of the `insight.created` for one row of the tenant's `gold.agent_insights`."""
    return deterministic_id("insight.created", validate_tenant_id(tenant_id), agent_id, row_id)


def latency_sample_id(endpoint_name: str, replica_id: str, window_start: datetime) -> str:
    """Id of one `serving.latency.sampled` (endpoint, replica, window)."""
    if window_start.tzinfo is None:
        raise ValueError("window_start must be timezone-aware")
    return deterministic_id(
        "serving.latency.sampled", endpoint_name, replica_id, window_start.astimezone(UTC).isoformat()
    )


def scale_request_id(endpoint_name: str, rule: str, fired_at: datetime) -> str:
    """Id of one `endpoint.scale.requested`, from the alert that fired it."""
    if fired_at.tzinfo is None:
        raise ValueError("fired_at must be timezone-aware")
    return deterministic_id("endpoint.scale.requested", endpoint_name, rule, fired_at.astimezone(UTC).isoformat())


def writeback_outcome_id(tenant_id: str, insight_id: str, outcome: str) -> str:
    """Id of `writeback.outcome` for one insight and outcome: a redelivered insight or a second approval never
    mints another."""
    return deterministic_id("writeback.outcome", tenant_id, insight_id, outcome)
