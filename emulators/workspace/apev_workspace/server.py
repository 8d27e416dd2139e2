"""The workspace: one object wiring every API area to shared state, and the ASGI app serving it.

Areas (identity, secrets, workspace files, jobs, faults) each keep state in memory under one re-entrant
lock and write through to one SQLite file (`<data dir>/workspace.sqlite3`). Later areas (Unity Catalog,
SQL, serving, notifications) add an attribute here, their routes in `build_app`, and their own kinds in
the store.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apev_workspace.billing import system_tables as billing_tables
from apev_workspace.billing import urls as billing_urls
from apev_workspace.billing.models import Billing
from apev_workspace.core.exceptions import EndpointNotFound
from apev_workspace.core.http import error_response
from apev_workspace.core.store import Store
from apev_workspace.faults import urls as fault_urls
from apev_workspace.faults.models import Faults
from apev_workspace.faults.responses import FaultMiddleware
from apev_workspace.files import urls as volume_files_urls
from apev_workspace.files.models import VolumeFiles
from apev_workspace.identity import urls as identity_urls
from apev_workspace.identity.models import (
    DEFAULT_ADMIN_USER,
    DEFAULT_OAUTH_TOKEN_TTL_SECONDS,
    Identity,
    OAuthSecrets,
)
from apev_workspace.jobs import urls as jobs_urls
from apev_workspace.jobs.execution import RUNNERS, Executor
from apev_workspace.jobs.models import Jobs
from apev_workspace.jobs.notebook import run_notebook_task
from apev_workspace.notifications import urls as notification_urls
from apev_workspace.notifications.delivery import WebhookSender
from apev_workspace.notifications.events import Notifier
from apev_workspace.notifications.models import Destinations
from apev_workspace.pages import urls as pages_urls
from apev_workspace.permissions import urls as permissions_urls
from apev_workspace.permissions.models import Permissions
from apev_workspace.registry import urls as registry_urls
from apev_workspace.registry.models import Registry
from apev_workspace.schedules.models import Scheduler
from apev_workspace.secrets import urls as secrets_urls
from apev_workspace.secrets.models import Secrets
from apev_workspace.serving import urls as serving_urls
from apev_workspace.serving.models import Serving
from apev_workspace.sql import task as sql_task
from apev_workspace.sql import urls as sql_urls
from apev_workspace.sql.models import Sql
from apev_workspace.tracking import urls as tracking_urls
from apev_workspace.tracking.models import Tracking
from apev_workspace.unity_catalog import urls as uc_urls
from apev_workspace.unity_catalog.models import UnityCatalog
from apev_workspace.vector_search import urls as vector_search_urls
from apev_workspace.vector_search.models import VectorSearch
from apev_workspace.workspace_files import urls as files_urls
from apev_workspace.workspace_files.models import WorkspaceFiles

log = logging.getLogger("apev_workspace")
RUNNERS["notebook_task"] = run_notebook_task

DEFAULT_ADMIN_TOKEN = "dapi-apev-local-admin"  # noqa: S105 (a documented local default) - documented; used when DATABRICKS_TOKEN is not set
DEFAULT_WORKSPACE_ID = "1234567890123456"


def admin_token_from_env() -> tuple[str, str]:
    """(token, where it came from): DATABRICKS_TOKEN when set, else the documented default."""
    token = os.environ.get("DATABRICKS_TOKEN")
    if token:
        return token, "DATABRICKS_TOKEN"
    return DEFAULT_ADMIN_TOKEN, "default"


@dataclass
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8787
    admin_token: str = DEFAULT_ADMIN_TOKEN
    admin_user: str = DEFAULT_ADMIN_USER
    executor_slots: int = 4
    failed_multitask_internal_error: bool = False
    public_url: str | None = None  # what tasks and run_page_url use; defaults to http://host:port
    workspace_id: str = DEFAULT_WORKSPACE_ID
    webhook_max_attempts: int = 6  # webhook deliveries per event before it is dropped
    webhook_retry_base_seconds: float = 2.0  # first backoff; doubles each attempt (2, 4, 8, 16, 32 s)
    serving_transition_seconds: float = 2.0  # least time a serving config update takes
    serving_idle_seconds: float = 1800.0  # idle time before scale_to_zero_enabled entities scale down
    serving_cold_start_seconds: float = 0.5  # extra start time of a served entity's worker
    oauth_token_ttl_seconds: int = DEFAULT_OAUTH_TOKEN_TTL_SECONDS  # lifetime of OAuth M2M access tokens
    vector_search_provision_seconds: float = 1.0  # a new Vector Search endpoint is PROVISIONING this long

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workspace_id = settings.workspace_id
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self._lock_file = _exclusive(data / ".lock")
        self.lock = threading.RLock()
        self.store = Store(data / "workspace.sqlite3")
        self.identity = Identity(self.store, self.lock, settings.admin_token, settings.admin_user)
        self.oauth = OAuthSecrets(self.identity, settings.oauth_token_ttl_seconds)
        self.files = WorkspaceFiles(self.store, self.lock, data / "workspace_objects")
        self.files.ensure_home(settings.admin_user)
        self.secrets = Secrets(self.store, self.lock)
        self.jobs = Jobs(
            self.store,
            self.lock,
            self.identity,
            workspace_id=settings.workspace_id,
            public_url=lambda: self.settings.url,
        )
        self.executor = Executor(
            self.jobs,
            self.identity,
            self.files,
            self.lock,
            data_dir=data,
            slots=settings.executor_slots,
            failed_multitask_internal_error=settings.failed_multitask_internal_error,
        )
        self.faults = Faults()
        self.uc = UnityCatalog(self.store, self.lock, self.identity, data / "volumes")
        self.volume_files = VolumeFiles(self.uc)
        self.sql = Sql(self.store, self.lock, self.uc, data, public_url=lambda: self.settings.url)
        self.permissions = Permissions(self.store, self.lock, self.identity)
        self.sql.warehouses.bind(self.permissions)
        self.uc.system_exists = self.sql.system_tables.exists
        sql_task.bind(self.executor, self.sql)
        self.sql.listeners.append(lambda e: self.billing.record_statement(**e))  # SQL usage in system.billing
        self.notifications = Destinations(self.store, self.lock)
        self.webhooks = WebhookSender(
            self.notifications.webhook_target,
            max_attempts=settings.webhook_max_attempts,
            retry_base=settings.webhook_retry_base_seconds,
        )
        self.notifier = Notifier(self.jobs, self.webhooks, settings.workspace_id, self.lock)
        self.executor.listeners.append(self.notifier.on_run)
        self.executor.task_listeners.append(self.notifier.on_task)
        self.schedules = Scheduler(self.store, self.lock, self.jobs)
        self.billing = Billing(self.store, workspace_id=settings.workspace_id)
        self.billing.jobs = self.jobs
        self.executor.listeners.append(self.billing.on_run_event)
        self.registry = Registry(self.store, self, data / "registry")
        self.tracking = Tracking(self.store, self.lock, self.files, self.permissions)
        self.serving = Serving(
            self.store,
            registry=self.registry,
            billing=self.billing,
            secrets=self.secrets,
            identity=self.identity,
            data_dir=data / "serving",
            transition_seconds=settings.serving_transition_seconds,
            idle_seconds=settings.serving_idle_seconds,
            cold_start_seconds=settings.serving_cold_start_seconds,
        )
        self.vector_search = VectorSearch(
            self.store,
            self.lock,
            self.identity,
            self.uc,
            self.sql,
            self.serving,
            data / "vector_search",
            public_url=lambda: self.settings.url,
            endpoint_provision_seconds=settings.vector_search_provision_seconds,
        )
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.executor.recover()
            self.sql.warehouses.ensure_default(self.identity.admin_principal())
            self.executor.start()
            self.webhooks.start()
            self.notifier.start()
            self.schedules.start()
            self.registry.start()
            self.serving.start()
            self.vector_search.start()
            billing_tables.register(self)  # system.billing.* through the SQL engine, when there is one
            self._started = True

    def close(self) -> None:
        if self._started:
            self.schedules.shutdown()
            self.executor.shutdown()
            self.notifier.shutdown()
            self.webhooks.shutdown()
            self.vector_search.close()
            self.serving.close()
            self._started = False
        self.sql.close()
        self.store.close()
        self._lock_file.close()


def _exclusive(path: Path) -> IO[str]:
    """One server per data directory: a second one would corrupt runs that the first is executing."""
    handle = path.open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RuntimeError(f"Another local workspace is using the data directory {path.parent}") from None
    return handle


async def well_known(request: Request) -> Response:
    ws: Workspace = request.app.state.workspace
    return JSONResponse({"workspace_id": ws.workspace_id, "oidc_endpoint": f"{ws.settings.url}/oidc"})


async def not_found(request: Request) -> Response:
    return error_response(EndpointNotFound(f"No API found for '{request.method} {request.url.path}'"))


def build_app(workspace: Workspace) -> FaultMiddleware:
    routes = [
        Route("/.well-known/databricks-config", well_known, methods=["GET"]),
        *identity_urls.routes(),
        *secrets_urls.routes(),
        *files_urls.routes(),
        *jobs_urls.routes(),
        *fault_urls.routes(),
        *notification_urls.routes(),
        *pages_urls.routes(),
        *registry_urls.routes(),
        *tracking_urls.routes(),
        *serving_urls.routes(),
        *billing_urls.routes(),
        *uc_urls.routes(),
        *volume_files_urls.routes(),
        *sql_urls.routes(),
        *permissions_urls.routes(),
        *vector_search_urls.routes(),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.workspace = workspace
    return FaultMiddleware(app, workspace.faults)
