"""Tenant isolation as a property, for ingest and serving SQL (each a process, as the operator runs it): whatever
tenant B's token asks of tenant A's data, through any mix of roles and every spelling of A's names, B reads
nothing of A's and changes nothing of A's. The effects are counted where they land.

Ingest: A's data sources (provisioned for real from `datasource.created`), an erasure request and a credential
rotation. B's reads of A's data source, erasure and rotation; listings with A as `tenant` or A's data source as
`cursor`; A's tables, offboarding status, an offboarding request, catalog and schema creation in A's catalog.
Afterwards A's data sources read the same to A, A's catalog has the schemas it had, and no `tenant.offboarded`
or `erasure.requested` for A came from B. `GET /api/v1/tenants` is the documented platform view for `admin`
(the console's tenant switch): refused to every other role, and its admin answer is counted apart.

Serving: each tenant's catalog with `gold.monthly_kpis` rows naming the tenant, its reader principal, agents
(one registered through the API, with its principal, grants and model). B's SQL naming A's catalog in every
form (three-part and back-ticked names, mixed case, the request's `catalog`/`schema`, information_schema,
IDENTIFIER, CTEs, subqueries, unions), the statement A just ran (the cache), A's cursor; B's agent listing,
reads, invokes, versions and endpoint requests naming A's agents. Afterwards no `job.requested` for A's agents
beyond their registration, A's agents unchanged; no B answer ever carries A's rows.

Hypothesis draws the operation, the roles, the spelling and which tenant is the victim (short: 40 examples per
service in `make test`; long: 400). One process per service for the module: after the properties, schemathesis
fuzzes the same processes as the first tenant's admin (`fuzzing.py`: bodies from the routes' pydantic models, so
SQL reaches the guard and the workspace): no 5xx (short: 5 examples per operation; long: 150).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from faults_report import Report
from fuzzing import derived_openapi, fuzz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_procs import JWT_SECRET, Ingest, ServiceProcess, Serving, Stand, until

from apev_contracts import naming
from apev_runtime.auth import mint_token
from apev_workspace.testing import running_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

ROLES = ["admin", "engineer", "analyst", "agent"]
roles_st = st.lists(st.sampled_from(ROLES), min_size=1, max_size=3, unique=True)
LONG = os.environ.get("APEV_FAULTS_LONG") == "1"
EXAMPLES = 400 if LONG else 40  # the isolation properties
FUZZ_EXAMPLES = 5  # schemathesis per operation in `make test` (150 in the long variant)


def token(tenant: str, roles: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(JWT_SECRET, tenant_id=tenant, roles=roles)}"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_workspace(tmp_path_factory.mktemp("ws-iso-data"), executor_slots=2) as ws:
        yield ws


@pytest.fixture(scope="module")
async def stand(
    kafka_bootstrap: str, pg_url: str, tmp_path_factory: pytest.TempPathFactory, workspace: Any, mcp_sim: Any,
    service_logs: list[str],
) -> AsyncIterator[Stand]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("iso-data")
    s = Stand(kafka_bootstrap, pg_url, tmp, workspace, mcp_sim, None, service_logs)  # no alert sinks here
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@dataclass
class Running:
    """One service process for the module: its target, replica, URL, what each tenant owns, and its set-up time."""

    target: Any
    replica: ServiceProcess
    base: str
    owned: dict[str, dict[str, Any]]
    start_seconds: float
    setup_seconds: float


def _spellings(tenant: str) -> list[str]:
    """Ways to name a tenant in a path or query: exact, upper-cased, padded, percent-encoded."""
    return [tenant, tenant.upper(), f"{tenant} ", quote(tenant, safe=""), f"{tenant}%00"]


# ================================================================ ingest

INGEST_OPS = ["datasource", "list_tenant", "list_cursor", "erasure", "rotation", "credentials", "tables",
              "offboarding", "offboard", "catalog", "schema", "tenants"]  # fmt: skip
SPELLED = (400, 403, 404)  # refused (a NUL is a 400 for every service), or not found; never an answer


def _stable(ds: dict[str, Any]) -> dict[str, Any]:
    """A data source as its owner reads it, without what moves by itself (the freshness clock)."""
    return {k: v for k, v in ds.items() if k != "freshness"}


def ingest_property(base: str, tenants: list[str], owned: dict[str, dict[str, Any]], examples: int) -> dict[str, int]:
    seen = {"tried": 0, "platform_view": 0, "own_listings": 0}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        victim=st.sampled_from([0, 1]),
        op=st.sampled_from(INGEST_OPS),
        roles=roles_st,
        which=st.integers(0, 1),
        spelling=st.integers(0, 4),
    )
    def check(victim: int, op: str, roles: list[str], which: int, spelling: int) -> None:
        seen["tried"] += 1
        owner, attacker = tenants[victim], tenants[1 - victim]
        mine = owned[owner]
        named = _spellings(owner)[spelling]
        h = token(attacker, roles)
        admin = "admin" in roles
        ds = mine["datasources"][which]
        if op == "datasource":
            r = httpx.get(f"{base}/api/v1/datasources/{ds}", headers=h)
            assert r.status_code == 404, r.text
        elif op == "list_tenant":
            r = httpx.get(f"{base}/api/v1/datasources", params={"tenant": named}, headers=h)
            assert r.status_code in SPELLED, r.text
        elif op == "list_cursor":  # the attacker's own listing, paged from the owner's data source id
            r = httpx.get(f"{base}/api/v1/datasources", params={"cursor": ds, "limit": 100}, headers=h)
            assert r.status_code == 200, r.text
            assert {d["tenant_id"] for d in r.json()["datasources"]} <= {attacker}, r.text
            seen["own_listings"] += 1
        elif op in ("erasure", "rotation"):
            path = "erasures" if op == "erasure" else "credentials/rotations"
            r = httpx.get(f"{base}/api/v1/{path}/{mine[op]}", headers=h)
            assert r.status_code == (404 if admin else 403), r.text
        elif op == "credentials":
            r = httpx.get(f"{base}/api/v1/credentials", headers=h)
            assert r.status_code == (200 if admin else 403), r.text
        elif op == "tables":
            r = httpx.get(f"{base}/api/v1/tenants/{named}/tables", headers=h)
            assert r.status_code in SPELLED, r.text
        elif op == "offboarding":
            r = httpx.get(f"{base}/api/v1/tenants/{named}/offboarding/{mine['erasure']}", headers=h)
            assert r.status_code in SPELLED, r.text
        elif op == "offboard":
            r = httpx.post(f"{base}/api/v1/tenants/{named}/offboarding", json={"reason": "intruder"}, headers=h)
            assert r.status_code in SPELLED, r.text
        elif op == "catalog":
            r = httpx.post(f"{base}/api/v1/databricks/catalogs", json={"name": mine["catalog"]}, headers=h)
            assert r.status_code == 403, r.text
        elif op == "schema":
            url = f"{base}/api/v1/databricks/catalogs/{mine['catalog']}/schemas"
            r = httpx.post(url, json={"name": "intruder"}, headers=h)
            assert r.status_code == 403, r.text
        else:
            r = httpx.get(f"{base}/api/v1/tenants", headers=h)
            assert r.status_code == (200 if admin else 403), r.text
            seen["platform_view"] += admin
            return  # the documented platform view: every tenant with data sources, for admins
        for marker in mine["markers"]:
            assert marker not in r.text, f"{attacker} {op} on {owner}: {marker!r} in {r.text[:300]}"

    check()
    return seen


async def _ingest_view(http: httpx.AsyncClient, tenant: str, owned: dict[str, Any]) -> dict[str, Any]:
    h = token(tenant, ["admin"])
    out = {}
    for ds in owned["datasources"]:
        r = await http.get(f"/api/v1/datasources/{ds}", headers=h)
        assert r.status_code == 200, r.text
        out[ds] = _stable(r.json())
    return out


async def _start_ingest(stand: Stand, replicas: list[ServiceProcess]) -> Running:
    """Two tenants with two data sources each (provisioned from `datasource.created`), an erasure request and a
    credential rotation each; the markers are what no other tenant may see (MCP code, key ids, integration ids,
    job names)."""
    started = time.monotonic()
    target = Ingest(tenants=2, base="iso-ingest")
    await target.prepare(stand)
    events = [target.event(stand, i) for i in range(4)]
    for _, event in events:
        await stand.send(event)
    assert stand.producer is not None
    await stand.producer.flush()
    owned: dict[str, dict[str, Any]] = {
        t: {"datasources": [ds for ds, e in events if e.tenantid == t], "catalog": naming.catalog_name(t)}
        for t in target.tenants
    }
    replica = stand.replica(target)
    replicas.append(replica)
    start = await replica.start()
    base = f"http://127.0.0.1:{replica.port}"

    async def provisioned() -> bool:
        return await target.progress(stand) >= len(events)

    await until(provisioned, timeout=240, what="the four data sources provisioned")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for t in target.tenants:
            h = token(t, ["admin"])
            r = await http.post("/api/v1/erasures", json={"employee_id": "E00007"}, headers=h)
            assert r.status_code == 202, r.text
            owned[t]["erasure"] = r.json()["request_id"]
            r = await http.post("/api/v1/credentials/rotations", json={"kind": "mcp_api_key"}, headers=h)
            assert r.status_code == 202, r.text
            owned[t]["rotation"] = r.json()["request_id"]
            keys = (await http.get("/api/v1/credentials", headers=h)).json()["credentials"]
            views = await _ingest_view(http, t, owned[t])
            owned[t]["markers"] = sorted(
                {target.codes[t]} | {str(k["key_id"]) for k in keys}
                | {str(v["mcp_integration_id"]) for v in views.values()} | {v["job_name"] for v in views.values()}
            )  # fmt: skip
    return Running(target, replica, base, owned, start, time.monotonic() - started)


@pytest.mark.faults
@pytest.mark.timeout(900)
async def test_ingest_no_tenant_reads_or_changes_anothers_data(ingest: Running, stand: Stand, report: Report) -> None:
    started = time.monotonic()
    target, owned = ingest.target, ingest.owned
    w = stand.workspace.client()

    def schemas(tenant: str) -> set[str]:
        return {str(s.name) for s in w.schemas.list(catalog_name=naming.catalog_name(tenant))}

    async with httpx.AsyncClient(base_url=ingest.base, timeout=60) as http:
        before = {t: await _ingest_view(http, t, owned[t]) for t in target.tenants}
        schemas_before = {t: await asyncio.to_thread(schemas, t) for t in target.tenants}
        seen = await asyncio.to_thread(ingest_property, ingest.base, target.tenants, owned, EXAMPLES)
        await asyncio.sleep(1)  # an offboarding or erasure that slipped through would be on its way now
        after = {t: await _ingest_view(http, t, owned[t]) for t in target.tenants}
    schemas_after = {t: await asyncio.to_thread(schemas, t) for t in target.tenants}
    offboarded = [e.tenantid for e in await stand.published("tenant.offboarded")]
    erasures = [e.tenantid for e in await stand.published("erasure.requested")]
    changed = [ds for t in target.tenants for ds in before[t] if before[t][ds] != after[t][ds]]
    changed += [f"schemas:{t}" for t in target.tenants if schemas_before[t] != schemas_after[t]]
    foreign = offboarded + [t for t in target.tenants if erasures.count(t) != 1]
    report.record(
        "tenant_isolation_ingest",
        tried=seen["tried"],
        lost=len(changed),
        duplicated=len(foreign),
        seconds=time.monotonic() - started,
        service_start_seconds=round(ingest.start_seconds, 1),
        setup_seconds=round(ingest.setup_seconds, 1),
        own_listings=seen["own_listings"],
        admin_platform_view=seen["platform_view"],
        note="lost: the owner's data sources or schemas changed; duplicated: offboardings, or erasures beyond "
        "the owner's one, that another tenant's token caused",
    )
    assert not changed, changed
    assert not foreign, (offboarded, erasures)


# ================================================================ serving

# SQL naming the owner's catalog `{C}` (or the owner's own unqualified names, which must resolve to the
# attacker's catalog): every spelling the guard has to see through.
STATEMENTS = [
    "SELECT * FROM {C}.gold.monthly_kpis",
    "SELECT * FROM `{C}`.`gold`.`monthly_kpis`",
    "SELECT * FROM `{C}.gold.monthly_kpis`",
    "SELECT * FROM {CU}.GOLD.MONTHLY_KPIS",
    "SELECT * FROM {C}.monthly_kpis",
    "SELECT practice_location FROM monthly_kpis UNION ALL SELECT practice_location FROM {C}.gold.monthly_kpis",
    "WITH monthly_kpis AS (SELECT * FROM {C}.gold.monthly_kpis) SELECT * FROM monthly_kpis",
    "SELECT * FROM monthly_kpis WHERE practice_location IN (SELECT practice_location FROM {C}.gold.monthly_kpis)",
    "SELECT (SELECT max(practice_location) FROM {C}.gold.monthly_kpis) AS m",
    "SELECT * FROM {C}.information_schema.tables",
    "SELECT table_catalog, table_name FROM information_schema.tables",
    "SELECT * FROM system.information_schema.tables",
    "SELECT * FROM IDENTIFIER('{C}.gold.monthly_kpis')",
    "SELECT * FROM {C}.gold.agent_insights",
    "USE CATALOG {C}",
    "SELECT 1; SELECT * FROM {C}.gold.monthly_kpis",
    "SELECT * FROM monthly_kpis",  # unqualified: the attacker's own rows, even right after the owner ran it
    "SELECT * FROM gold.monthly_kpis ORDER BY visits",
]


SERVING_OPS = ["sql"] * 4 + ["sql_catalog", "sql_schema", "cached", "cursor", "agents", "agent", "invoke",
                              "version", "endpoint", "endpoint_entity", "get_endpoint", "register_as",
                              "register_same_id"]  # fmt: skip


def serving_property(base: str, tenants: list[str], owned: dict[str, dict[str, Any]], examples: int) -> dict[str, int]:
    seen = {"tried": 0, "own_rows": 0, "refused": 0}
    sql = f"{base}/api/v1/databricks/sql/query"

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        victim=st.sampled_from([0, 1]),
        op=st.sampled_from(SERVING_OPS),
        roles=roles_st,
        statement=st.sampled_from(STATEMENTS),
        which=st.integers(0, 1),
    )
    def check(victim: int, op: str, roles: list[str], statement: str, which: int) -> None:
        seen["tried"] += 1
        owner, attacker = tenants[victim], tenants[1 - victim]
        mine = owned[owner]
        cat = mine["catalog"]
        h = token(attacker, roles)
        agent = mine["agents"][which]
        text = statement.format(C=cat, CU=cat.upper())
        write = bool({"admin", "engineer"} & set(roles))
        if op == "sql":
            r = httpx.post(sql, json={"statement": text}, headers=h)
        elif op == "sql_catalog":
            r = httpx.post(sql, json={"catalog": cat, "statement": "SELECT * FROM monthly_kpis"}, headers=h)
            assert r.status_code == 403, r.text
            seen["refused"] += 1
        elif op == "sql_schema":
            r = httpx.post(sql, json={"schema": cat, "statement": "SELECT * FROM monthly_kpis"}, headers=h)
            assert r.status_code == 403, r.text
            seen["refused"] += 1
        elif op == "cached":  # the owner runs it first (a cached result), then the attacker the same text
            first = httpx.post(sql, json={"statement": "SELECT * FROM monthly_kpis"}, headers=token(owner, ["analyst"]))
            assert first.status_code == 200 and mine["rows"] in first.text, first.text
            r = httpx.post(sql, json={"statement": "SELECT * FROM monthly_kpis"}, headers=h)
            assert r.status_code == 200 and owned[attacker]["rows"] in r.text, r.text
            seen["own_rows"] += 1
        elif op == "cursor":  # the owner's next page, asked for with the attacker's token
            first = httpx.post(sql, json={"statement": "SELECT * FROM monthly_kpis ORDER BY visits", "page_rows": 1},
                               headers=token(owner, ["analyst"]))  # fmt: skip
            assert first.status_code == 200 and first.json()["next_cursor"], first.text
            r = httpx.post(sql, json={"cursor": first.json()["next_cursor"]}, headers=h)
            assert r.status_code == 403, r.text
            seen["refused"] += 1
        elif op == "agents":
            r = httpx.get(f"{base}/api/v1/agents", headers=h)
            assert r.status_code == 200, r.text
            assert not {a["agent_id"] for a in r.json()["agents"]} & set(mine["agents"]), r.text
        elif op == "agent":
            r = httpx.get(f"{base}/api/v1/agents/{agent}", headers=h)
            assert r.status_code == 403, r.text
        elif op == "invoke":
            r = httpx.post(f"{base}/api/v1/agents/{agent}/invoke", json={"input": {"query": "top locations"}},
                           headers=h)  # fmt: skip
            assert r.status_code == 403, r.text
        elif op == "version":
            r = httpx.post(f"{base}/api/v1/agents/{agent}/versions", json={"model_source": "/Shared/x.py"}, headers=h)
            assert r.status_code == 403, r.text
        elif op == "endpoint":
            body = {"agent_id": agent, "served_entities": [{"entity_version": "1"}]}
            r = httpx.post(f"{base}/api/v1/databricks/serving-endpoints", json=body, headers=h)
            assert r.status_code == 403, r.text
        elif op == "endpoint_entity":
            entity = {"entity_name": mine["model"], "entity_version": "1"}
            body = {"name": f"intruder-{which}", "served_entities": [entity]}
            r = httpx.post(f"{base}/api/v1/databricks/serving-endpoints", json=body, headers=h)
            assert r.status_code == 403, r.text
        elif op == "get_endpoint":
            r = httpx.get(f"{base}/api/v1/databricks/serving-endpoints/agent-{agent}", headers=h)
            assert r.status_code in (403, 404), r.text
        elif op == "register_as":  # an agent registered under the owner's tenant id
            body = {"tenant_id": owner, "name": "intruder", "model_source": "/Shared/x.py",
                    "tables": ["gold.monthly_kpis"]}  # fmt: skip
            r = httpx.post(f"{base}/api/v1/agents", json=body, headers=h)
            assert r.status_code == 403, r.text
        else:  # the owner's agent id, registered by the attacker: refused, and the owner's agent stays the owner's
            body = {"agent_id": agent, "name": "intruder", "model_source": "/Shared/x.py",
                    "tables": ["gold.monthly_kpis"]}  # fmt: skip
            r = httpx.post(f"{base}/api/v1/agents", json=body, headers=h)
            assert r.status_code == (409 if write else 403), r.text
        assert mine["rows"] not in r.text, f"{attacker} {op} {text!r}: {owner}'s rows in {r.text[:300]}"
        for marker in mine["markers"]:
            assert marker not in r.text, f"{attacker} {op}: {marker!r} in {r.text[:300]}"
        if op == "sql":
            if r.status_code == 200:
                seen["own_rows"] += owned[attacker]["rows"] in r.text
            else:
                assert r.status_code in (400, 403), r.text
                seen["refused"] += 1

    check()
    return seen


async def _agents_view(http: httpx.AsyncClient, tenant: str, agents: list[str]) -> dict[str, Any]:
    h = token(tenant, ["admin"])
    out = {}
    for a in agents:
        r = await http.get(f"/api/v1/agents/{a}", headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        out[a] = {k: body.get(k) for k in ("agent_id", "tenant_id", "name", "state", "model_name", "principal")}
    return out


async def _start_serving(stand: Stand, replicas: list[ServiceProcess]) -> Running:
    """Two tenants' catalogs, readers and gold tables, four agents as rows and one registered through the API per
    tenant (its principal, grants, model and token made for real)."""
    started = time.monotonic()
    target = Serving(tenants=2, size=4, base="iso-serving")
    await target.prepare(stand)
    replica = stand.replica(target)
    replicas.append(replica)
    owned: dict[str, dict[str, Any]] = {}
    start = await replica.start()
    base = f"http://127.0.0.1:{replica.port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for n, t in enumerate(target.tenants):
            registered = f"{target.tag}-reg-{n}"
            body = {"agent_id": registered, "name": f"registered agent of {t}", "model_source": "/Shared/m.py",
                    "tables": ["gold.monthly_kpis"]}  # fmt: skip
            r = await http.post("/api/v1/agents", json=body, headers=token(t, ["engineer"]))
            assert r.status_code == 202, r.text
            agents = [registered] + [target.agent(i)[1] for i in range(target.size) if target.agent(i)[0] == t]
            owned[t] = {
                "catalog": naming.catalog_name(t),
                "rows": f"{t}-loc-",  # what monthly_kpis holds in the tenant's catalog
                "agents": agents,
                "model": r.json()["model_name"],
                "markers": [r.json()["principal_id"], f"registered agent of {t}"],
            }
    return Running(target, replica, base, owned, start, time.monotonic() - started)


@pytest.fixture(scope="module")
async def running(stand: Stand) -> AsyncIterator[dict[str, Running]]:
    """Ingest and serving for the module, started side by side (start-ups and ingest's provisioning overlap)."""
    replicas: list[ServiceProcess] = []
    try:
        ingest, serving = await asyncio.gather(_start_ingest(stand, replicas), _start_serving(stand, replicas))
        yield {"ingest": ingest, "serving": serving}
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))


@pytest.fixture
def ingest(running: dict[str, Running]) -> Running:
    return running["ingest"]


@pytest.fixture
def serving(running: dict[str, Running]) -> Running:
    return running["serving"]


@pytest.mark.faults
@pytest.mark.timeout(900)
async def test_serving_no_tenant_reads_anothers_sql_or_agents(serving: Running, stand: Stand, report: Report) -> None:
    started = time.monotonic()
    target, owned, base = serving.target, serving.owned, serving.base
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for t in target.tenants:  # the controls: each tenant's own SQL returns its own rows
            r = await http.post("/api/v1/databricks/sql/query", json={"statement": "SELECT * FROM monthly_kpis"},
                                headers=token(t, ["analyst"]))  # fmt: skip
            assert r.status_code == 200 and owned[t]["rows"] in r.text, r.text
        before = {t: await _agents_view(http, t, owned[t]["agents"]) for t in target.tenants}
        seen = await asyncio.to_thread(serving_property, base, target.tenants, owned, EXAMPLES)
        await asyncio.sleep(1)
        after = {t: await _agents_view(http, t, owned[t]["agents"]) for t in target.tenants}
    requested = await stand.published("job.requested")
    mine = {a for t in target.tenants for a in owned[t]["agents"]}
    per_agent = {a: sum(1 for e in requested if e.data.key == a) for a in mine}
    # registration asks for the deploy job (run now) and the insights job of the registered agents; nothing else
    extra = {a: n for a, n in per_agent.items() if n != (2 if "-reg-" in a else 0)}
    changed = [a for t in target.tenants for a in before[t] if before[t][a] != after[t][a]]
    report.record(
        "tenant_isolation_serving",
        tried=seen["tried"],
        lost=len(changed),
        duplicated=sum(abs(n - (2 if "-reg-" in a else 0)) for a, n in extra.items()),
        seconds=time.monotonic() - started,
        service_start_seconds=round(serving.start_seconds, 1),
        setup_seconds=round(serving.setup_seconds, 1),
        sql_own_rows=seen["own_rows"],
        sql_refused=seen["refused"],
        note="lost: the owner's agents changed; duplicated: job requests for the owner's agents beyond their "
        "registration",
    )
    assert not changed, changed
    assert not extra, extra
    assert seen["refused"] > 0, seen  # the property reached the guard


# ================================================================ schemathesis on the same processes


async def _fuzz(running: Running, report: Report, examples: int, name: str) -> None:
    """After the isolation properties (file order): the fuzz may offboard or erase its own tenant."""
    started = time.monotonic()
    tenant = running.target.tenants[0]
    document = derived_openapi(running.target.name)
    statuses, errors = await asyncio.to_thread(fuzz, running.base, document, examples, tenant)
    proc = running.replica.proc
    report.record(
        name,
        tried=sum(statuses.values()),
        lost=len(errors),
        seconds=time.monotonic() - started,
        service=running.target.name,
        operations=sum(len(v) for v in document["paths"].values()),
        statuses=dict(sorted(statuses.items())),
        server_errors=errors[:10],
    )
    assert proc is not None and proc.returncode is None
    assert not errors, errors[:5]


@pytest.mark.faults
@pytest.mark.timeout(600)
async def test_schemathesis_ingest_finds_no_5xx(ingest: Running, report: Report) -> None:
    await _fuzz(ingest, report, FUZZ_EXAMPLES, "schemathesis_ingest")


@pytest.mark.faults
@pytest.mark.timeout(600)
async def test_schemathesis_serving_finds_no_5xx(serving: Running, report: Report) -> None:
    await _fuzz(serving, report, FUZZ_EXAMPLES, "schemathesis_serving")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
async def test_schemathesis_ingest_finds_no_5xx_long(ingest: Running, report: Report) -> None:
    await _fuzz(ingest, report, 150, "schemathesis_long_ingest")


@pytest.mark.faults_long
@pytest.mark.timeout(1800)
async def test_schemathesis_serving_finds_no_5xx_long(serving: Running, report: Report) -> None:
    await _fuzz(serving, report, 150, "schemathesis_long_serving")
