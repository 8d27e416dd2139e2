"""Prometheus metrics of the jobs service (registered on the runtime's registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs_started = Counter(
            "apev_jobs_runs_started_total", "Runs started by run-now (new runs only)", ["kind"], registry=registry
        )
        self.runs_finished = Counter(
            "apev_jobs_runs_finished_total",
            "run.finished events queued, by kind, outcome and how completion was seen",
            ["kind", "outcome", "via"],
            registry=registry,
        )
        self.completion_lag = Histogram(
            "apev_jobs_completion_lag_seconds",
            "Run end (Databricks end_time) to run.finished queued in the outbox",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.databricks_calls = Counter(
            "apev_jobs_databricks_calls_total",
            "Databricks SDK calls by endpoint and status (after the SDK's own retries)",
            ["endpoint", "status"],
            registry=registry,
        )
        self.reconciler_recovered = Counter(
            "apev_jobs_reconciler_recovered_total",
            "Finished runs the reconciler found without a notification",
            registry=registry,
        )
        self.reconciler_passes = Counter(
            "apev_jobs_reconciler_passes_total",
            "Reconciler passes, by whether this replica held the lock",
            ["held"],
            registry=registry,
        )
