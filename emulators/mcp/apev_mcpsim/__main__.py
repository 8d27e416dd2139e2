"""``python -m apev_mcpsim --port 8785``: run the MCP simulator in the foreground."""

from __future__ import annotations

import logging
import os
import secrets

import typer

from apev_mcpsim.app import create_simulator
from apev_mcpsim.models import SimConfig
from apev_mcpsim.server import bind, server

cli = typer.Typer(add_completion=False, help="DentalERP MCP server simulator")
log = logging.getLogger("apev_mcpsim")


@cli.command()
def main(
    port: int = typer.Option(8785, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    seed: int = typer.Option(42, help="seed of the synthetic data, ticks and ratio faults"),
    locations: int = typer.Option(8, min=1, help="practice locations per tenant"),
    days: int = typer.Option(1461, min=1, help="days of daily production KPIs per location"),
    webhook_backoff: float = typer.Option(0.5, help="first webhook retry delay, seconds (doubles)"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    admin_key = os.environ.get("MCP_API_KEY")
    if admin_key:
        key_note = "admin key: from MCP_API_KEY"
    else:
        admin_key = f"mcpadmin-{secrets.token_hex(16)}"
        key_note = f"admin key: {admin_key} (generated; set MCP_API_KEY to choose it)"
    config = SimConfig(seed=seed, admin_key=admin_key, locations=locations, days=days, webhook_backoff=webhook_backoff)
    sim = create_simulator(config)
    log.info("MCP simulator on http://%s:%d (tenants: default, acme, dormant[inactive]; seed %d)", host, port, seed)
    log.info(key_note)
    server(sim).run(sockets=[bind(host, port)])


if __name__ == "__main__":
    cli()
