"""A tenant left (`tenant.offboarded`): what serving owns of it goes.

    on_tenant_offboarded(event, tx)     the tenant's serving endpoints (its rows' and any endpoint the workspace
                                        tags `ap_tenant_id=<tenant>`) and its document index, then per agent its
                                        registered model (when the catalog is still there), MLflow experiment,
                                        OBO tokens, OAuth secrets, token secret and service principal `agent_<id>`;
                                        then serving's rows of the tenant (agents, versions, endpoints, insights,
                                        watermarks)
    forget(tenant)                      this replica's memory of it: cached SQL results, the reader token, agents

Ingest drops the catalog (with `force`), the secret scope and the tenant's own principals from the same event, and
the jobs service deletes the agents' jobs; the order between services is not guaranteed, so every call here treats
"already gone" (NotFound) as done. The rows are read first and deleted last, in the handler's final transaction
(with the inbox row): a redelivery after a crash finds them again and repeats the deletions, which change nothing
more. Another tenant's endpoints, principals and rows are never touched: everything is selected by tenant id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import TenantOffboarded, naming
from apev_contracts.envelope import CloudEvent
from apev_serving import tables
from apev_serving.gateway import Gateway
from apev_serving.service import ServingService
from apev_serving.settings import Settings
from apev_serving.sql import SqlQueries

log = structlog.get_logger("apev.serving.offboarding")

TENANT_TAG = "ap_tenant_id"
AGENT_TAG = "ap_agent_id"


@dataclass(frozen=True)
class Agent:
    agent_id: str
    principal: str
    model_name: str
    principal_id: str | None = None  # its application id, as registered


@dataclass
class Removed:
    """What one offboarding removed (names only: nothing secret)."""

    endpoints: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    tokens: int = 0
    oauth_secrets: int = 0
    principals: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------- workspace calls (SDK, worker threads)
def tenant_endpoints(w: WorkspaceClient, tenant_id: str) -> dict[str, str | None]:
    """Endpoints the workspace tags as the tenant's: name -> its agent id (None for an endpoint of no agent)."""
    found: dict[str, str | None] = {}
    for e in w.serving_endpoints.list():
        tags = {t.key: t.value for t in e.tags or []}
        if e.name and tags.get(TENANT_TAG) == tenant_id:
            found[e.name] = tags.get(AGENT_TAG)
    return found


def delete_endpoint(w: WorkspaceClient, name: str) -> bool:
    try:
        w.serving_endpoints.delete(name)
    except NotFound:
        return False
    return True


def delete_index(w: WorkspaceClient, name: str) -> bool:
    """The tenant's Vector Search index (retrieval.py); the shared Vector Search endpoint stays."""
    try:
        w.vector_search_indexes.delete_index(name)
    except NotFound:
        return False
    return True


def delete_model(w: WorkspaceClient, full_name: str) -> bool:
    """The registered model and its versions; False when it (or its catalog, dropped by ingest) is gone."""
    try:
        w.registered_models.get(full_name)
        w.registered_models.delete(full_name)
    except NotFound:
        return False
    return True


def models_of(w: WorkspaceClient, catalog_name: str, schema: str) -> list[str]:
    """Registered models of the tenant's agents schema (none when the catalog or schema is gone)."""
    try:
        return [str(m.full_name) for m in w.registered_models.list(catalog_name=catalog_name, schema_name=schema)]
    except NotFound:
        return []


def delete_experiments(w: WorkspaceClient, names: Iterable[str]) -> list[str]:
    gone = []
    for name in names:
        try:
            found = w.experiments.get_by_name(name).experiment
            if found is not None and found.experiment_id:
                w.experiments.delete_experiment(found.experiment_id)
                gone.append(name)
        except NotFound:
            continue
    return gone


def delete_principal(w: WorkspaceClient, display_name: str) -> tuple[int, int, bool]:
    """The service principal with this name, its OBO tokens and OAuth secrets first (so nothing it signed
    stays valid): (tokens revoked, secrets deleted, principal deleted)."""
    found = [
        sp
        for sp in w.service_principals.list(filter=f'displayName eq "{display_name}"')
        if sp.display_name == display_name and sp.id
    ]
    tokens = secrets = 0
    for sp in found:
        owner = int(str(sp.id)) if str(sp.id).isdigit() else None
        for t in list(w.token_management.list()):
            if t.token_id and owner is not None and t.owner_id == owner:
                with contextlib.suppress(NotFound):
                    w.token_management.delete(t.token_id)
                    tokens += 1
        with contextlib.suppress(NotFound):
            for s in list(w.service_principal_secrets_proxy.list(str(sp.id))):
                if s.id:
                    with contextlib.suppress(NotFound):
                        w.service_principal_secrets_proxy.delete(str(sp.id), s.id)
                        secrets += 1
        with contextlib.suppress(NotFound):
            w.service_principals.delete(str(sp.id))
    return tokens, secrets, bool(found)


def delete_secret(w: WorkspaceClient, scope: str, key: str) -> bool:
    """The agent's token in the tenant's secret scope (ingest may have deleted the scope already)."""
    try:
        w.secrets.delete_secret(scope, key)
    except NotFound:
        return False
    return True


# ---------------------------------------------------------------------- the decision
class Offboarding:
    def __init__(self, gateway: Gateway, settings: Settings, service: ServingService, sql: SqlQueries) -> None:
        self.gw = gateway
        self.settings = settings
        self.service = service
        self.sql = sql

    async def _call(self, endpoint: str, fn: Callable[[WorkspaceClient], Any]) -> Any:
        return await self.gw._call(endpoint, fn)  # the gateway's counter of Databricks calls

    async def on_tenant_offboarded(self, event: CloudEvent[TenantOffboarded], tx: AsyncConnection) -> None:
        tenant = event.data.tenant_id
        agents = [
            Agent(r.agent_id, r.principal, r.model_name, r.principal_id)
            for r in await tx.execute(select(tables.agents).where(tables.agents.c.tenant_id == tenant))
        ]
        endpoint_rows = set(
            (await tx.execute(select(tables.endpoints.c.name).where(tables.endpoints.c.tenant_id == tenant))).scalars()
        )
        await tx.commit()  # nothing is held while the workspace answers
        removed = Removed()
        tagged = await self._call("serving-endpoints/list", lambda w: tenant_endpoints(w, tenant))
        known = {a.agent_id for a in agents}
        for agent_id in sorted({a for a in tagged.values() if a and a not in known}):  # an agent whose row is gone
            other = await self.service.agent(agent_id)
            if other is not None and other.tenant_id != tenant:  # a tag naming another tenant's agent: not ours
                log.warning("offboarding_skipped_foreign_agent", tenant_id=tenant, agent_id=agent_id)
                continue
            with contextlib.suppress(ValueError):  # not an agent id (a hand-made tag)
                agents.append(Agent(agent_id, naming.agent_principal(agent_id), ""))
        for name in sorted(endpoint_rows | {a_endpoint(a) for a in agents} | set(tagged)):
            if await self._call("serving-endpoints/delete", partial(delete_endpoint, name=name)):
                removed.endpoints.append(name)
        index = naming.knowledge_index(tenant)
        if await self._call("vector-search/indexes/delete", partial(delete_index, name=index)):
            removed.indexes.append(index)
        catalog = naming.catalog_name(tenant)
        models = {a.model_name for a in agents if a.model_name}
        models |= set(
            await self._call("unity-catalog/models", lambda w: models_of(w, catalog, self.settings.models_schema))
        )
        for model in sorted(m for m in models if m.split(".")[0] == catalog):
            if await self._call("unity-catalog/models/delete", partial(delete_model, full_name=model)):
                removed.models.append(model)
        scope = naming.secret_scope(tenant)
        for agent in agents:
            app_id = agent.principal_id or await self.gw.principal_id(agent.principal)
            names = [f"/Users/{who}/agentprovision/{agent.agent_id}" for who in {app_id, agent.principal} if who]
            removed.experiments += await self._call(
                "mlflow/experiments/delete", partial(delete_experiments, names=names)
            )
            key = f"{agent.principal}_token"
            await self._call("secrets/delete", partial(delete_secret, scope=scope, key=key))
            tokens, secrets, gone = await self._call(
                "scim/ServicePrincipals/delete", partial(delete_principal, display_name=agent.principal)
            )
            removed.tokens += tokens
            removed.oauth_secrets += secrets
            if gone:
                removed.principals.append(agent.principal)
        removed.rows = await self._delete_rows(tx, tenant, [a.agent_id for a in agents])
        self.forget(tenant)
        log.info(
            "tenant_offboarded",
            tenant_id=tenant,
            event_id=event.id,
            endpoints=removed.endpoints,
            indexes=removed.indexes,
            models=removed.models,
            experiments=len(removed.experiments),
            tokens=removed.tokens,
            oauth_secrets=removed.oauth_secrets,
            principals=removed.principals,
            rows=removed.rows,
        )

    async def _delete_rows(self, tx: AsyncConnection, tenant: str, agent_ids: list[str]) -> dict[str, int]:
        """Serving's rows of the tenant, in the handler's final transaction (the inbox row commits with them)."""
        counts: dict[str, int] = {}
        for table, where in (
            (tables.versions, tables.versions.c.agent_id.in_(agent_ids)),
            (tables.insight_watermarks, tables.insight_watermarks.c.tenant_id == tenant),
            (tables.insights, tables.insights.c.tenant_id == tenant),
            (tables.endpoints, tables.endpoints.c.tenant_id == tenant),
            (tables.agents, tables.agents.c.tenant_id == tenant),
        ):
            counts[table.name] = (await tx.execute(delete(table).where(where))).rowcount or 0
        return counts

    def forget(self, tenant: str) -> dict[str, int]:
        """This replica's memory of the tenant (each replica consumes the event in a group of its own)."""
        dropped = self.sql.forget_tenant(tenant)
        agents = self.service.forget_tenant(tenant)
        log.info("tenant_forgotten", tenant_id=tenant, sql_results=dropped, agents=agents)
        return {"sql_results": dropped, "agents": agents}


def a_endpoint(agent: Agent) -> str:
    return f"agent-{agent.agent_id}"
