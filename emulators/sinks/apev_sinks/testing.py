"""Helpers for any test that needs Slack, PagerDuty or SMTP: start the stand-ins on free ports in-process.

    from apev_sinks.testing import running_sinks

    with running_sinks() as sinks:
        httpx.post(sinks.urls.slack_webhook(sinks.slack_path), json={"text": "hi"})
        assert sinks.backend.slack.messages()[0].text == "hi"

Pytest fixtures (import them into a conftest: `from apev_sinks.testing import alert_sinks, alert_sinks_server`):
`alert_sinks_server` is one server per session; `alert_sinks` is that server, reset before each test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from apev_sinks.backend import Sinks, SinksConfig
from apev_sinks.clock import Clock
from apev_sinks.faults import FaultRule, FaultSpec
from apev_sinks.server import SinksServer, SinkURLs


@dataclass(frozen=True)
class RunningSinks:
    urls: SinkURLs
    backend: Sinks

    @property
    def slack_path(self) -> str:
        """The first registered webhook path (`#alerts` with the defaults)."""
        return self.backend.slack.webhooks()[0].path

    @property
    def slack_url(self) -> str:
        """The full URL of the first registered webhook; register others with `backend.slack.register(...)`."""
        return self.urls.slack_webhook(self.slack_path)

    @property
    def routing_key(self) -> str:
        """The first registered PagerDuty routing key (`apev-oncall` with the defaults)."""
        return next(iter(self.backend.pagerduty.routing_keys()))

    def fault(self, match: str, **spec: Any) -> FaultRule:
        """Inject a fault: `sinks.fault("/v2/enqueue", status=503, count=2)`; see `FaultSpec`."""
        return self.backend.faults.add(FaultSpec(match=match, **spec))

    def reset(self) -> None:
        self.backend.reset()

    def interactivity(self, request_url: str, signing_secret: str) -> None:
        """Send clicks on buttons to `request_url`, signed with `signing_secret`."""
        self.backend.slack.interactivity.configure(request_url, signing_secret)

    def click(self, message_id: int, action_id: str, user_id: str, **options: Any) -> dict[str, Any]:
        """Click a button of a message as `user_id` (through the admin route, as a person would through Slack):
        `{"status", "body", "elapsed_ms", "response_url"}` of the app's answer. Options: `user_name`,
        `signature` ("valid", "forged", "missing"), `timestamp_offset` (seconds)."""
        import httpx

        url = f"{self.urls.http}/_admin/slack/messages/{message_id}/click"
        response = httpx.post(url, json={"action_id": action_id, "user_id": user_id, **options}, timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def aclick(self, message_id: int, action_id: str, user_id: str, **options: Any) -> dict[str, Any]:
        """`click` for async tests, whose app under test answers the click on the same event loop."""
        import httpx

        url = f"{self.urls.http}/_admin/slack/messages/{message_id}/click"
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(url, json={"action_id": action_id, "user_id": user_id, **options})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextlib.contextmanager
def running_sinks(
    config: SinksConfig | None = None,
    *,
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    slack_webhooks: Mapping[str, str] | None = None,
    routing_keys: Mapping[str, str] | None = None,
    slack_min_interval: float | None = None,
    pagerduty_rate_limit: int | None = None,
    pagerduty_rate_window: float | None = None,
) -> Iterator[RunningSinks]:
    """Slack and PagerDuty on one free HTTP port, SMTP on another, served by a background thread.

    Keyword arguments override `config`. Pass `clock=ManualClock()` to drive rate-limit windows by hand.
    """
    config = config or SinksConfig()
    overrides: dict[str, Any] = {
        "slack_webhooks": slack_webhooks,
        "routing_keys": routing_keys,
        "slack_min_interval": slack_min_interval,
        "pagerduty_rate_limit": pagerduty_rate_limit,
        "pagerduty_rate_window": pagerduty_rate_window,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    backend = Sinks.create(config, clock=clock)
    server = SinksServer(backend, host=host, port=0, smtp_port=0)
    with server.in_thread() as urls:
        yield RunningSinks(urls=urls, backend=backend)


@pytest.fixture(scope="session")
def alert_sinks_server() -> Iterator[RunningSinks]:
    """One set of stand-ins for the whole session, on the real clock with the real limits."""
    with running_sinks() as sinks:
        yield sinks


@pytest.fixture
def alert_sinks(alert_sinks_server: RunningSinks) -> RunningSinks:
    """The session's stand-ins, emptied (messages, incidents, mail, faults, counters, rate limits) for this test."""
    alert_sinks_server.reset()
    return alert_sinks_server
