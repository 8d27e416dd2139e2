"""`writeback.outcome`: what became of one insight's write-back (produced by writeback)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from apev_contracts.common import ContractModel, EntityName, Identifier, LongText, Name, TenantId, UtcDatetime
from apev_contracts.events.datasource import OutsideSystem

WritebackOutcome = Literal["applied", "held", "rejected", "conflict", "failed"]
DecisionVia = Literal["policy", "http", "slack"]


class WritebackOutcomeRecorded(ContractModel):
    """One step an insight's write-back reached: held for approval, rejected (by policy or a person), applied
    to the outside system through MCP, refused as a conflict (the record changed since the agent saw it), or
    failed for good. One event per insight and outcome."""

    tenant_id: TenantId
    insight_id: Identifier
    agent_id: Identifier
    target_system: OutsideSystem
    entity_type: EntityName
    entity_id: Identifier
    outcome: WritebackOutcome
    decided_via: DecisionVia
    """Who let it through or stopped it: the tenant's policy, a person over HTTP or from Slack."""
    decided_by: Name | None = None
    """The person (JWT subject or Slack user id) for `http` and `slack`."""
    detail: LongText | None = None
    """Why: the policy rule that held or rejected it, or MCP's `detail` for a conflict or failure."""
    change_id: Identifier | None = None
    """MCP's change id, for `applied`."""
    version: Annotated[int, Field(ge=0)] | None = None
    """The record's version after the change, for `applied`."""
    attempts: Annotated[int, Field(ge=0)] = 0
    """MCP update calls made for this insight so far (retries and redeliveries included)."""
    occurred_at: UtcDatetime
