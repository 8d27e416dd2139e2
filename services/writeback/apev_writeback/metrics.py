"""Prometheus metrics of the writeback service (registered on the runtime's registry, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "apev_writeback_outcomes_total",
            "writeback.outcome events queued, by target system, outcome and who decided",
            ["system", "outcome", "via"],
            registry=registry,
        )
        self.mcp_calls = Counter(
            "apev_writeback_mcp_calls_total",
            "MCP write-back calls (after the client's own retries), by target system and status",
            ["system", "status"],
            registry=registry,
        )
        self.mcp_latency = Histogram(
            "apev_writeback_mcp_latency_seconds",
            "MCP write-back call time, retries included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.decisions = Counter(
            "apev_writeback_decisions_total",
            "Approvals and rejections by people, by channel and result (taken, no_change, refused)",
            ["via", "decision", "result"],
            registry=registry,
        )
        self.slack_posts = Counter(
            "apev_writeback_slack_posts_total", "Posts to Slack (messages and response_url updates) by status",
            ["status"], registry=registry,
        )  # fmt: skip
        self.slack_refused = Counter(
            "apev_writeback_slack_interactions_refused_total",
            "Slack interactions refused, by reason (signature, timestamp, approver, payload)",
            ["reason"],
            registry=registry,
        )
        self.resumed = Counter(
            "apev_writeback_resumed_total", "Pending write-backs taken up again by the resume loop", registry=registry
        )
