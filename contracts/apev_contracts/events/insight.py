"""`insight.created`: an agent produced an insight to write back to an outside system (consumed by writeback)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue

from apev_contracts.common import ContractModel, EntityName, FieldName, Identifier, LongText, TenantId, bounded_json
from apev_contracts.events.datasource import OutsideSystem


class InsightCreated(ContractModel):
    """One change an agent proposes for one record of an outside system, with why and how sure it is."""

    tenant_id: TenantId
    insight_id: Identifier
    agent_id: Identifier
    target_system: OutsideSystem
    entity_type: EntityName
    entity_id: Identifier
    changes: Annotated[dict[FieldName, JsonValue], Field(min_length=1, max_length=100), AfterValidator(bounded_json)]
    """Field of the target record -> its new value."""
    reason: Annotated[LongText, Field(min_length=1)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    expected_version: Identifier | None = None
    """The record version the agent saw; the write-back is refused if the record changed since."""
