"""Prometheus metrics of the monitor (on the runtime's registry, served at /metrics): what the seed lists.

Job duration by kind (p50/p95/p99 with `histogram_quantile`), runs by outcome (success rate), retried runs
(repairs and task retries), API errors by class, breaker trips, DBUs and dollars by tenant, serving latency,
data freshness, alert states and notification attempts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from apev_contracts import LATENCY_BUCKET_BOUNDS_MS


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.job_duration = Histogram(
            "apev_monitor_job_duration_seconds",
            "Run duration (start to end) from run.finished, by job kind",
            ["kind"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=registry,
        )
        self.runs = Counter(
            "apev_monitor_runs_total",
            "run.finished by kind and outcome (success rate)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "apev_monitor_run_retries_total",
            "Repairs and task retries seen in run.finished",
            ["kind"],
            registry=registry,
        )
        self.api_errors = Counter(
            "apev_monitor_api_errors_total",
            "Errors of outside calls (Databricks, notification endpoints) by target and error class",
            ["target", "error_class"],
            registry=registry,
        )
        self.breaker_trips = Counter(
            "apev_monitor_breaker_trips_total",
            "Calls refused by an open circuit breaker",
            ["target"],
            registry=registry,
        )
        self.dbus = Gauge(
            "apev_monitor_dbus",
            "DBUs by tenant and usage day (latest samples)",
            ["tenant_id", "usage_date"],
            registry=registry,
        )
        self.dollars = Gauge(
            "apev_monitor_dollars",
            "List-price dollars by tenant and usage day",
            ["tenant_id", "usage_date"],
            registry=registry,
        )
        self.serving_latency = Histogram(
            "apev_monitor_serving_latency_ms",
            "Invoke latency from serving.latency.sampled (each window's buckets at their upper bound)",
            ["endpoint_name"],
            buckets=tuple(b for b in LATENCY_BUCKET_BOUNDS_MS if b != float("inf")),
            registry=registry,
        )
        self.freshness = Gauge(
            "apev_monitor_data_age_seconds",
            "Seconds since a data source's last successful ingest run",
            ["tenant_id", "datasource_id"],
            registry=registry,
        )
        self.alerts = Gauge("apev_monitor_alerts", "Alerts by rule and state", ["rule", "state"], registry=registry)
        self.notifications = Counter(
            "apev_monitor_notification_attempts_total",
            "Notification attempts by receiver and outcome",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.cost_samples = Counter(
            "apev_monitor_cost_samples_total", "cost.sampled published (new revisions)", registry=registry
        )
        self.unattributed = Gauge(
            "apev_monitor_unattributed_dollars",
            "Dollars of usage rows no tenant could be attributed to (last cycle)",
            registry=registry,
        )
