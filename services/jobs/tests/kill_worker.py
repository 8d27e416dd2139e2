"""The jobs service in a process that SIGKILLs itself right after run-now answered, before anything after it
(the run id, the inbox row, the offset) is committed. Settings come from the environment (JOBS_*)."""

from __future__ import annotations

import os
import signal
import sys

from apev_jobs.app import create_app
from apev_jobs.gateway import Gateway
from apev_jobs.metrics import Metrics
from apev_jobs.settings import Settings
from apev_runtime.app import serve
from apev_runtime.databricks import DatabricksClients


class KillAfterRunNow(Gateway):
    async def run_now(self, job_id: str, job_parameters: dict[str, str], token: str, only: list[str] | None) -> str:
        run_id = await super().run_now(job_id, job_parameters, token, only)
        print(f"run-now answered {run_id}; killing myself before the commit", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return run_id


if __name__ == "__main__":
    settings = Settings()
    gateway = None
    if os.environ.get("KILL_AFTER_RUN_NOW") == "1":
        from prometheus_client import CollectorRegistry

        assert settings.databricks_host and settings.databricks_token
        clients = DatabricksClients(settings.databricks_host, settings.databricks_token.get_secret_value())
        gateway = KillAfterRunNow(clients, Metrics(CollectorRegistry()))
    serve(create_app(settings, gateway=gateway), settings)
    sys.exit(0)
