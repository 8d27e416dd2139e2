"""`python -m apev_sinks`: the Slack, PagerDuty and SMTP stand-ins in the foreground (what `make sinks` runs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer

from apev_sinks.backend import Sinks, SinksConfig
from apev_sinks.server import SinksServer

log = logging.getLogger("apev_sinks")
app = typer.Typer(add_completion=False, help=__doc__)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    """`KEY=NAME` or `KEY` entries, also split on commas (environment variables are space or comma separated)."""
    out: dict[str, str] = {}
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            key, _, name = item.partition("=")
            if not key:
                raise typer.BadParameter(f"{what} entry {item!r} has no key; expected KEY or KEY=NAME")
            out[key.strip().removeprefix("/services/")] = name.strip()
    return out


@app.command()
def main(
    host: Annotated[str, typer.Option(envvar="APEV_SINKS_HOST", help="Interface for both servers.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="APEV_SINKS_PORT", help="HTTP port (Slack, PagerDuty, admin); 0 picks a free one.")
    ] = 8790,
    smtp_port: Annotated[
        int, typer.Option(envvar="APEV_SINKS_SMTP_PORT", help="SMTP port; 0 picks a free one.")
    ] = 8025,
    slack_webhook: Annotated[
        list[str] | None,
        typer.Option(
            envvar="APEV_SINKS_SLACK_WEBHOOKS", help="Extra webhook PATH[=#channel] (the part after /services/)."
        ),
    ] = None,
    routing_key: Annotated[
        list[str] | None,
        typer.Option(envvar="APEV_SINKS_PAGERDUTY_ROUTING_KEYS", help="Extra 32-character routing KEY[=service]."),
    ] = None,
    no_defaults: Annotated[bool, typer.Option(help="Do not register the default webhooks and routing keys.")] = False,
    slack_interval: Annotated[float, typer.Option(help="Seconds between accepted messages per Slack webhook.")] = 1.0,
    pagerduty_rate_limit: Annotated[int, typer.Option(help="Events per window per PagerDuty routing key.")] = 120,
    pagerduty_window: Annotated[float, typer.Option(help="PagerDuty rate-limit window, in seconds.")] = 60.0,
    slack_request_url: Annotated[
        str | None,
        typer.Option(envvar="APEV_SINKS_SLACK_REQUEST_URL", help="Where button clicks are sent (interactivity)."),
    ] = None,
    slack_signing_secret: Annotated[
        str | None, typer.Option(envvar="APEV_SINKS_SLACK_SIGNING_SECRET", help="Signs the clicks (v0 HMAC).")
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="APEV_SINKS_LOG_LEVEL")] = "info",
) -> None:
    """Serve Slack (/services/...) and PagerDuty (/v2/enqueue) on one HTTP port and SMTP on another."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = SinksConfig(
        slack_webhooks={k: v or "" for k, v in _pairs(slack_webhook or [], "--slack-webhook").items()},
        routing_keys=_pairs(routing_key or [], "--routing-key"),
        defaults=not no_defaults,
        slack_min_interval=slack_interval,
        pagerduty_rate_limit=pagerduty_rate_limit,
        pagerduty_rate_window=pagerduty_window,
        slack_request_url=slack_request_url,
        slack_signing_secret=slack_signing_secret,
    )
    try:
        sinks = Sinks.create(config)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        server = SinksServer(sinks, host=host, port=port, smtp_port=smtp_port)
    except OSError as exc:
        typer.echo(f"sinks: cannot listen on {host} (HTTP {port}, SMTP {smtp_port}): {exc}", err=True)
        raise typer.Exit(1) from exc
    for line in describe(server):
        log.info("%s", line)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve())
    log.info("sinks: stopped")


def describe(server: SinksServer) -> list[str]:
    urls, sinks = server.urls, server.sinks
    lines = [f"sinks: HTTP on {urls.http}, SMTP on {urls.smtp_host}:{urls.smtp_port}, admin at {urls.admin}"]
    lines.append(f"sinks: Slack incoming webhooks (POST, 1 message per {sinks.slack.min_interval:g} s each):")
    lines += [f"sinks:   {h.channel:<12} {urls.slack_webhook(h.path)}" for h in sinks.slack.webhooks()]
    lines.append(
        f"sinks: PagerDuty Events API v2 at {urls.pagerduty_events} "
        f"({sinks.pagerduty.rate_limit} events per {sinks.pagerduty.rate_window:g} s per key); routing keys:"
    )
    lines += [f"sinks:   {key}  -> {service}" for key, service in sinks.pagerduty.routing_keys().items()]
    lines += [
        f"sinks: SMTP: host {urls.smtp_host} port {urls.smtp_port}, no TLS, any AUTH login accepted",
        "sinks: configure clients with the webhook URL, the events URL and the SMTP host/port above;",
        "sinks: add webhooks/keys with --slack-webhook PATH=#chan, --routing-key KEY=service (or the env vars",
        "sinks: APEV_SINKS_SLACK_WEBHOOKS / APEV_SINKS_PAGERDUTY_ROUTING_KEYS), or at run time:",
        f"sinks:   curl -XPOST {urls.admin}/slack/webhooks -H 'content-type: application/json' "
        """-d '{"path": "T1/B1/x", "channel": "#x"}'""",
        f"sinks: read what arrived: {urls.admin}/slack/messages, {urls.admin}/pagerduty/incidents, "
        f"{urls.admin}/smtp/messages",
    ]
    return lines


if __name__ == "__main__":
    app()
