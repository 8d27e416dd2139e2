"""The ingest service's Prometheus metrics (on the runtime's registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.by_state = Gauge(
            "apev_ingest_datasources", "Data sources by provisioning state", ["state"], registry=registry
        )
        self.transitions = Counter(
            "apev_ingest_datasource_transitions", "Data sources reaching a state", ["state"], registry=registry
        )
        self.step_seconds = Histogram(
            "apev_ingest_provisioning_step_seconds",
            "Duration of one provisioning step (outside calls included)",
            ["step"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.webhooks = Counter(
            "apev_ingest_mcp_webhooks", "MCP webhooks by outcome", ["type", "outcome"], registry=registry
        )
        self.freshness = Gauge(
            "apev_ingest_data_freshness_seconds",
            "Age of the data in gold per data source: now minus the start of its last successful run",
            ["tenant_id", "datasource_id"],
            registry=registry,
        )
