"""All three backends and the shared fault and counter state, built from one config object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from apev_sinks.clock import Clock, SystemClock
from apev_sinks.faults import Faults, RequestCounters
from apev_sinks.pagerduty.models import DEFAULT_ROUTING_KEYS, PagerDutyBackend
from apev_sinks.slack.models import DEFAULT_WEBHOOKS, SlackBackend
from apev_sinks.smtp.models import Mailbox


@dataclass(frozen=True)
class SinksConfig:
    """Everything tunable. Extra webhooks and routing keys are added to the defaults unless `defaults` is off."""

    slack_webhooks: Mapping[str, str] = field(default_factory=dict)
    routing_keys: Mapping[str, str] = field(default_factory=dict)
    defaults: bool = True
    slack_min_interval: float = 1.0
    pagerduty_rate_limit: int = 120
    pagerduty_rate_window: float = 60.0
    fault_seed: int | None = None
    slack_request_url: str | None = None
    """Where a click on a message's button is sent (the Slack app's interactivity Request URL)."""
    slack_signing_secret: str | None = None


@dataclass
class Sinks:
    clock: Clock
    slack: SlackBackend
    pagerduty: PagerDutyBackend
    mailbox: Mailbox
    faults: Faults
    counters: RequestCounters

    @classmethod
    def create(cls, config: SinksConfig | None = None, clock: Clock | None = None) -> Sinks:
        config = config or SinksConfig()
        clock = clock or SystemClock()
        webhooks = {**(DEFAULT_WEBHOOKS if config.defaults else {}), **config.slack_webhooks}
        keys = {**(DEFAULT_ROUTING_KEYS if config.defaults else {}), **config.routing_keys}
        slack = SlackBackend(clock, min_interval=config.slack_min_interval, webhooks=webhooks)
        if config.slack_request_url and config.slack_signing_secret:
            slack.interactivity.configure(config.slack_request_url, config.slack_signing_secret)
        return cls(
            clock=clock,
            slack=slack,
            pagerduty=PagerDutyBackend(
                clock,
                rate_limit=config.pagerduty_rate_limit,
                rate_window=config.pagerduty_rate_window,
                routing_keys=keys,
            ),
            mailbox=Mailbox(clock),
            faults=Faults(seed=config.fault_seed),
            counters=RequestCounters(),
        )

    def reset(self) -> None:
        """Forget everything received, every fault and counter; keep webhooks, routing keys and limits."""
        self.slack.reset()
        self.pagerduty.reset()
        self.mailbox.reset()
        self.faults.clear()
        self.counters.clear()
