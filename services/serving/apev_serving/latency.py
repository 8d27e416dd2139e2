"""Invoke latency: a Prometheus histogram, and the 10 s windows published as `serving.latency.sampled`
(ARCHITECTURE §8: count, sum and counts per fixed bucket, per endpoint and replica; replicas merge by adding)."""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from apev_contracts import ServingLatencySampled
from apev_contracts.events.serving import LATENCY_BUCKET_BOUNDS_MS, quantile_ms

FINITE_BOUNDS = LATENCY_BUCKET_BOUNDS_MS[:-1]


def bucket_index(ms: float) -> int:
    """Index of the bucket (bounds inclusive) holding `ms`; the last is +Inf."""
    return bisect.bisect_left(FINITE_BOUNDS, ms)


@dataclass
class _Window:
    tenant_id: str
    count: int = 0
    sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKET_BOUNDS_MS))


class Latency:
    def __init__(self, registry: CollectorRegistry, replica_id: str, keep: int = 60) -> None:
        self.replica_id = replica_id
        self.histogram = Histogram(
            "apev_serving_invoke_latency_ms",
            "End-to-end invoke latency (ms) by endpoint, buckets of ARCHITECTURE §8",
            ["endpoint"],
            buckets=FINITE_BOUNDS,
            registry=registry,
        )
        self.invokes = Counter(
            "apev_serving_invokes_total", "Invokes by endpoint and outcome", ["endpoint", "outcome"], registry=registry
        )
        self._windows: dict[str, _Window] = {}
        self._start = datetime.now(UTC)
        self.recent: dict[str, deque[ServingLatencySampled]] = {}
        self._keep = keep

    def observe(self, tenant_id: str, endpoint: str, ms: float, outcome: str) -> None:
        self.histogram.labels(endpoint).observe(ms)
        self.invokes.labels(endpoint, outcome).inc()
        window = self._windows.setdefault(endpoint, _Window(tenant_id))
        window.count += 1
        window.sum_ms += ms
        window.buckets[bucket_index(ms)] += 1

    def cut(self, now: datetime | None = None) -> list[ServingLatencySampled]:
        """Close the current window: one sample per endpoint that had invokes in it."""
        end = now or datetime.now(UTC)
        start, self._start = self._start, end
        windows, self._windows = self._windows, {}
        samples = [
            ServingLatencySampled(
                tenant_id=w.tenant_id,
                endpoint_name=name,
                replica_id=self.replica_id,
                window_start=start,
                window_end=end,
                count=w.count,
                sum_ms=round(w.sum_ms, 3),
                buckets=w.buckets,
            )
            for name, w in windows.items()
            if w.count
        ]
        for s in samples:
            self.recent.setdefault(s.endpoint_name, deque(maxlen=self._keep)).append(s)
        return samples

    def summary(self, endpoint: str) -> dict[str, object]:
        """Recent latency of one endpoint on this replica: the last published windows, merged."""
        recent = list(self.recent.get(endpoint, ()))
        live = self._windows.get(endpoint)
        buckets = [0] * len(LATENCY_BUCKET_BOUNDS_MS)
        count, total = 0, 0.0
        for s in recent:
            buckets = [a + b for a, b in zip(buckets, s.buckets, strict=True)]
            count, total = count + s.count, total + s.sum_ms
        if live is not None:
            buckets = [a + b for a, b in zip(buckets, live.buckets, strict=True)]
            count, total = count + live.count, total + live.sum_ms
        return {
            "count": count,
            "mean_ms": round(total / count, 3) if count else None,
            "p50_ms": _bound(quantile_ms(buckets, 0.5)),
            "p95_ms": _bound(quantile_ms(buckets, 0.95)),
            "p99_ms": _bound(quantile_ms(buckets, 0.99)),
            "buckets": buckets,
            "bounds_ms": [str(b) for b in LATENCY_BUCKET_BOUNDS_MS],
            "windows": len(recent),
            "series": [
                {
                    "window_end": s.window_end.isoformat(),
                    "count": s.count,
                    "p50_ms": _bound(quantile_ms(s.buckets, 0.5)),
                    "p95_ms": _bound(quantile_ms(s.buckets, 0.95)),
                    "p99_ms": _bound(quantile_ms(s.buckets, 0.99)),
                }
                for s in recent
            ],
        }


def _bound(ms: float | None) -> float | str | None:
    """A bucket bound for JSON: +Inf has no JSON number."""
    return "+Inf" if ms is not None and ms == float("inf") else ms
