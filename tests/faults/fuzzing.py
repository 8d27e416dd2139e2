"""Schemathesis for the fault suite: an OpenAPI document derived from a service's route table (for the services
that publish none) and a bounded fuzz of every operation against a running service.

`derived_openapi(name)`: every path and method of the route table, path parameters as strings, the query
parameters the routes read; JSON bodies as the pydantic model the route parses where it has one (so generated
bodies get past validation into the service), else any object. `fuzz(base, document, examples, tenant)`: that
many generated requests per operation with a token of every role of `tenant`; the statuses seen and each 5xx as
a curl command.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel
from service_procs import JWT_SECRET, TENANT
from starlette.routing import Route

from apev_ingest import api as ingest_api
from apev_monitor import api as monitor_api
from apev_runtime.auth import mint_token
from apev_serving import api as serving_api
from apev_writeback import api as writeback_api
from apev_writeback.settings import Settings as WritebackSettings


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


def fuzz(
    base_url: str, document: dict[str, Any], examples: int, tenant: str = TENANT
) -> tuple[Counter[int], list[str]]:
    """Every operation, `examples` generated requests each; (statuses seen, the 5xx ones as curl commands)."""
    schema = schemathesis.openapi.from_dict(document)
    token = mint_token(JWT_SECRET, tenant_id=tenant, roles=["admin", "engineer", "analyst", "agent"])
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
