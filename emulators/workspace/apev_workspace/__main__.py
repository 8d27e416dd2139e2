"""`python -m apev_workspace --port 8787 --data-dir .stack/workspace`: the local workspace in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
import uvicorn

from apev_workspace.server import Settings, Workspace, admin_token_from_env, build_app

cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def main(
    port: int = typer.Option(8787, help="TCP port to listen on"),
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    data_dir: Path = typer.Option(Path(".stack/workspace"), help="state, workspace files and run logs"),
    executor_slots: int = typer.Option(4, help="task processes that may run at once; the rest queue"),
    public_url: str = typer.Option("", help="URL tasks and run pages use (default http://<host>:<port>)"),
    oauth_token_ttl_seconds: int = typer.Option(3600, help="lifetime of OAuth M2M access tokens (client_credentials)"),
    failed_multitask_internal_error: bool = typer.Option(
        False, help="failed multi-task runs show legacy INTERNAL_ERROR/FAILED (measured serverless variant)"
    ),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token, source = admin_token_from_env()
    settings = Settings(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        admin_token=token,
        executor_slots=executor_slots,
        failed_multitask_internal_error=failed_multitask_internal_error,
        public_url=public_url or None,
        oauth_token_ttl_seconds=oauth_token_ttl_seconds,
    )
    workspace = Workspace(settings)
    workspace.start()
    shown = "from DATABRICKS_TOKEN" if source == "DATABRICKS_TOKEN" else f"default {token!r} (DATABRICKS_TOKEN unset)"
    logging.getLogger("apev_workspace").info(
        "local Databricks workspace at %s (data dir %s, %d executor slots); admin token: %s",
        settings.url,
        settings.data_dir,
        settings.executor_slots,
        shown,
    )
    try:
        uvicorn.run(build_app(workspace), host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        workspace.close()


if __name__ == "__main__":
    cli()
