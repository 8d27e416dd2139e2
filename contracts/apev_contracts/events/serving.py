"""Serving events: `serving.latency.sampled` (serving -> monitor) and `endpoint.scale.requested`
(monitor -> serving)."""

from __future__ import annotations

from typing import Annotated, Final, Self

from pydantic import Field, model_validator

from apev_contracts.common import ContractModel, EndpointName, Identifier, LongText, Name, TenantId, UtcDatetime

LATENCY_BUCKET_BOUNDS_MS: Final[tuple[float, ...]] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    float("inf"),
)
"""Upper bounds (inclusive) of the latency buckets; `buckets[i]` counts invokes with latency in
(bounds[i-1], bounds[i]]. Fixed for major version 1: windows merge by adding buckets."""


class ServingLatencySampled(ContractModel):
    """End-to-end invoke latency of one endpoint and replica over one window (10 s by default)."""

    tenant_id: TenantId
    endpoint_name: EndpointName
    replica_id: Identifier
    window_start: UtcDatetime
    window_end: UtcDatetime
    count: Annotated[int, Field(ge=0)]
    sum_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    buckets: Annotated[
        list[Annotated[int, Field(ge=0)]],
        Field(min_length=len(LATENCY_BUCKET_BOUNDS_MS), max_length=len(LATENCY_BUCKET_BOUNDS_MS)),
    ]
    """Count per bucket of `LATENCY_BUCKET_BOUNDS_MS` (not cumulative); they add up to `count`."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        if sum(self.buckets) != self.count:
            raise ValueError(f"buckets add up to {sum(self.buckets)}, not count={self.count}")
        return self

    def quantile_ms(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (e.g. 0.95), None without invokes."""
        return quantile_ms(self.buckets, q)


def merge_buckets(*samples: ServingLatencySampled) -> list[int]:
    """Windows from several replicas (or several windows) merge by adding buckets."""
    return [sum(column) for column in zip(*(s.buckets for s in samples), strict=True)]


def quantile_ms(buckets: list[int], q: float) -> float | None:
    """Upper bound of the bucket holding the q-quantile of a bucket list, None when it is empty."""
    if not 0.0 < q <= 1.0:
        raise ValueError("q must be in (0, 1]")
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bound, count in zip(LATENCY_BUCKET_BOUNDS_MS, buckets, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return LATENCY_BUCKET_BOUNDS_MS[-1]


class EndpointScaleRequested(ContractModel):
    """Raise an endpoint's workload size one step (serving applies it, with a cooldown)."""

    tenant_id: TenantId
    endpoint_name: EndpointName
    rule: Name
    """The alert rule that asked, e.g. `model_serving_latency`."""
    reason: Annotated[LongText, Field(min_length=1)]
    observed_p95_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    threshold_ms: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    served_entity_name: Name | None = None
    """None: every served entity of the endpoint."""
