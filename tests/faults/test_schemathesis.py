"""Schemathesis against the services' HTTP APIs, running as processes on the suite's Kafka and PostgreSQL: no
generated request gets a 5xx. Jobs publishes its own OpenAPI document (`/openapi.json`); monitor, write-back,
ingest and serving have none, so theirs is derived here from their route table (every path and method, path
parameters as strings, the query parameters they read; JSON bodies as the pydantic model the route parses where
it has one, so generated bodies get past validation into the service, else any object). Authorised as an admin
of a tenant; a bounded number of examples per operation (short: 15, in `make test`; long: 150). Serving's tenant
has a catalog, a reader principal and gold tables (what `Serving.prepare` lays out), so accepted SQL runs.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from faults_report import Report
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel
from service_procs import JWT_SECRET, TENANT, Ingest, Jobs, Monitor, Serving, Stand, Target, Writeback
from starlette.routing import Route

from apev_ingest import api as ingest_api
from apev_monitor import api as monitor_api
from apev_runtime.auth import mint_token
from apev_serving import api as serving_api
from apev_workspace.testing import running_workspace
from apev_writeback import api as writeback_api
from apev_writeback.settings import Settings as WritebackSettings

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


class _Routes:
    """A stand-in service object: route tables are read, never called."""

    def __getattr__(self, name: str) -> Any:
        return _Routes()


# The query parameters the routes read (`request.query_params.get(...)` in their api modules).
QUERY = {
    "monitor": ["state", "rule", "from", "to"],
    "writeback": ["state", "limit"],
    "ingest": ["tenant", "limit", "cursor"],
    "serving": [],
}
# The body models the routes parse (path template, method) -> model; other bodies are any JSON object.
BODIES: dict[str, dict[tuple[str, str], type[BaseModel]]] = {
    "ingest": {
        ("/api/v1/databricks/catalogs", "POST"): ingest_api.CatalogBody,
        ("/api/v1/databricks/catalogs/{name}/schemas", "POST"): ingest_api.CatalogBody,
        ("/api/v1/erasures", "POST"): ingest_api.ErasureBody,
        ("/api/v1/credentials/rotations", "POST"): ingest_api.RotationBody,
        ("/api/v1/tenants/{tenant}/offboarding", "POST"): ingest_api.OffboardingBody,
    },
    "serving": {
        ("/api/v1/databricks/sql/query", "POST"): serving_api.SqlQueryRequest,
        ("/api/v1/agents", "POST"): serving_api.AgentRequest,
        ("/api/v1/agents/{agent_id}/versions", "POST"): serving_api.VersionRequest,
        ("/api/v1/agents/{agent_id}/invoke", "POST"): serving_api.InvokeRequest,
        ("/api/v1/databricks/serving-endpoints", "POST"): serving_api.EndpointRequest,
    },
}


def _body_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema (by alias) with its `$defs` moved to the document's components."""
    schema = json.loads(json.dumps(model.model_json_schema(by_alias=True)).replace("#/$defs/", "#/components/schemas/"))
    components.update(schema.pop("$defs", {}))
    return dict(schema)


def derived_openapi(name: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document from a service's route table (what it serves, without its own document)."""
    stub: Any = _Routes()
    table = {
        "monitor": lambda: monitor_api.routes(stub, None),
        "writeback": lambda: writeback_api.routes(stub, WritebackSettings(), None),
        "ingest": lambda: ingest_api.routes(stub, None, None),
        "serving": lambda: serving_api.routes(stub, stub, None),
    }[name]()
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for route in table:
        if not isinstance(route, Route):
            continue
        params = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for p in re.findall(r"{([^}:]+)(?::[^}]+)?}", route.path)
        ]
        path = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", route.path)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            query = [{"name": q, "in": "query", "schema": {"type": "string"}} for q in QUERY[name]]
            parameters = params + (query if method == "GET" else [])
            op: dict[str, Any] = {"parameters": parameters, "responses": {"default": {"description": "any"}}}
            if method in ("POST", "PUT", "PATCH"):
                model = BODIES.get(name, {}).get((path, method))
                body = _body_schema(model, components) if model is not None else {"type": "object"}
                op["requestBody"] = {"content": {"application/json": {"schema": body}}}
            paths.setdefault(path, {})[method.lower()] = op
    title = f"{name} (derived from its routes)"
    return {
        "openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths,
        "components": {"schemas": components},
    }  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-fuzz"), executor_slots=2) as ws:
        yield ws


@pytest.fixture
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, workspace: Any, mcp_sim: Any, alert_sinks: Any,
    service_logs: list[str],
) -> AsyncIterator[Stand]:  # fmt: skip
    s = Stand(kafka_bootstrap, pg_url, tmp_path, workspace, mcp_sim, alert_sinks, service_logs)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def fuzz(base_url: str, document: dict[str, Any], examples: int) -> tuple[Counter[int], list[str]]:
    """Every operation, `examples` generated requests each; (statuses seen, the 5xx ones as curl commands)."""
    schema = schemathesis.openapi.from_dict(document)
    token = mint_token(JWT_SECRET, tenant_id=TENANT, roles=["admin", "engineer", "analyst", "agent"])
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                errors.append(f"{response.status_code} {case.as_curl_command()}")

        run()
    return statuses, errors


async def _fuzz_service(stand: Stand, target: Target, report: Report, examples: int, name: str) -> None:
    started = time.monotonic()
    await target.prepare(stand)
    replica = stand.replica(target)
    try:
        await replica.start()
        base = f"http://127.0.0.1:{replica.port}"
        if target.name == "jobs":
            async with httpx.AsyncClient(timeout=10) as http:
                document = (await http.get(f"{base}/openapi.json")).json()
        else:
            document = derived_openapi(target.name)
        statuses, errors = await asyncio.to_thread(fuzz, base, document, examples)
        alive = replica.proc is not None and replica.proc.returncode is None
    finally:
        await replica.stop()
    report.record(
        name,
        tried=sum(statuses.values()),
        lost=len(errors),
        seconds=time.monotonic() - started,
        service=target.name,
        operations=sum(len(v) for v in document["paths"].values()),
        statuses=dict(sorted(statuses.items())),
        server_errors=errors[:10],
    )
    assert alive
    assert not errors, errors[:5]


SERVICES: dict[str, Any] = {
    "jobs": Jobs,
    "monitor": Monitor,
    "writeback": Writeback,
    "ingest": lambda: Ingest(base=TENANT),  # the token's tenant: its MCP tenant in the tenants file
    "serving": lambda: Serving(size=3, base=TENANT),  # the token's tenant: catalog, reader, gold tables, agents
}


@pytest.mark.faults
@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_schemathesis_finds_no_5xx(service: str, stand: Stand, report: Report) -> None:
    await _fuzz_service(stand, SERVICES[service](), report, 15, f"schemathesis_{service}")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_schemathesis_finds_no_5xx_long(service: str, stand: Stand, report: Report) -> None:
    await _fuzz_service(stand, SERVICES[service](), report, 150, f"schemathesis_long_{service}")
