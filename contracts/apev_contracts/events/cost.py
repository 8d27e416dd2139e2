"""`cost.sampled`: DBUs and dollars for one tenant, usage day and SKU (published by monitor's sampler)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from apev_contracts.common import ContractModel, Dbus, Money, TenantId, UtcDatetime

Sku = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Z0-9][A-Z0-9_]*$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class CostSampled(ContractModel):
    """Usage of one (tenant, usage_date, sku), net of retractions, priced at list price. A later correction
    of the same key is published again with a higher `revision` (and so a new deterministic id)."""

    tenant_id: TenantId
    usage_date: date
    sku: Sku
    dbus: Dbus
    dollars: Money
    currency: Currency = "USD"
    revision: Annotated[int, Field(ge=0)] = 0
    window_start: UtcDatetime
    """Start of the usage covered by this sample (inclusive)."""
    window_end: UtcDatetime
    """End of the usage covered (exclusive); before the end of the day while the day is still running."""

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self
