"""The console's lineage page over HTTP with a signed-in session: OpenLineage events of an ingestion run (built by
the jobs service's own builder, as it emits them) sent on `lineage.emitted` and stored by the monitor's
LineageStore; the page of `gold.monthly_kpis` draws and tables its upstream (MCP entity, landing, bronze, silver,
the task runs and their jobs), re-centres on a node, and shows the API's refusals (403 another tenant or a role
that may not read lineage, 404 an unknown node) on the page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import jwt
import pytest

from apev_contracts import RunFinished, naming
from apev_contracts.events.runs import RunState, RunStatus, TaskRun
from apev_jobs.lineage import Catalog, LineageBuilder, RunRef, cloud_event
from apev_sinks.testing import RunningSinks

from .conftest import JWT_SECRET, Stack, monitor_stack, unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TASKS = ["fetch_from_mcp", "load_bronze", "bronze_to_silver", "quality_checks", "silver_to_gold"]


def _finished(tenant: str) -> RunFinished:
    tasks = [
        TaskRun(task_key=k, run_id=str(500 + i), attempt_number=0, start_time=T0, end_time=T0,
                state=RunState(life_cycle_state="TERMINATED", result_state="SUCCESS"))
        for i, k in enumerate(TASKS)
    ]  # fmt: skip
    return RunFinished(
        tenant_id=tenant, job_id="7", run_id="77", repair_attempt=0, kind="ingest", key="di-1",
        job_name=f"ap:{tenant}:ingest:di-1", tags={},
        job_parameters={"datasource_id": "di-1", "system": "dentalintel", "entities": "production_kpis"},
        state=RunState(life_cycle_state="TERMINATED", result_state="SUCCESS"), status=RunStatus(state="TERMINATED"),
        outcome="success", tasks=tasks, start_time=T0, end_time=T0,
    )  # fmt: skip


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, pg_url: str, sinks: RunningSinks) -> AsyncIterator[Stack]:
    async with monitor_stack(kafka_bootstrap, pg_url, sinks) as s:
        yield s


@pytest.fixture(scope="module")
async def tenant(stack: Stack) -> str:
    """One ingestion run's OpenLineage events, consumed and stored by the monitor."""
    tenant = unique("lin")
    ref = RunRef(tenant, f"ap:{tenant}:ingest:di-1", "ingest", "77")
    cat = naming.catalog_name(tenant)
    cols = {f"{cat}.gold.monthly_kpis": [("month", "DATE")], f"{cat}.silver.production_kpis": [("kpi_id", "STRING")]}
    events = [cloud_event(ref, e) for e in LineageBuilder("http://127.0.0.1:8787").finished(
        ref, _finished(tenant), Catalog(columns=cols, row_counts={f"{cat}.gold.monthly_kpis": 6}))]  # fmt: skip
    await stack.send(*events)
    await stack.consumed(*events)
    return tenant


def _signed_in(s: Stack, tenant: str, roles: tuple[str, ...]) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=s.base_url, timeout=30)
    token = jwt.encode(
        {"iss": "agentprovision", "aud": "apev", "sub": "ops-2", "iat": 1, "exp": 4102444800, "tenant_id": tenant,
         "roles": list(roles)}, JWT_SECRET, algorithm="HS256",
    )  # fmt: skip
    http.cookies.set("apev_console", token, path="/console")
    return http


def _rows(html: str) -> set[tuple[str, str]]:
    table = html.split('id="lineage-nodes"', 1)[1].split("</table>", 1)[0]
    return set(re.findall(r'data-kind="(\w+)" data-name="([^"]+)"', table))


async def test_the_lineage_page_of_a_gold_table_shows_its_upstream_as_a_graph_and_a_table(
    stack: Stack, tenant: str
) -> None:
    cat = naming.catalog_name(tenant)
    job = f"ap:{tenant}:ingest:di-1"
    async with _signed_in(stack, tenant, ("analyst",)) as http:
        page = await http.get("/console/lineage", params={"node": "gold.monthly_kpis"})
        async with stack.http(tenant, ("analyst",)) as api:
            graph = (await api.get("/api/v1/lineage", params={"node": "gold.monthly_kpis"})).json()
        upstream = await http.get("/console/lineage", params={"node": "gold.monthly_kpis", "direction": "upstream"})
        empty = await http.get("/console/lineage")
        tables_nav = (await http.get("/console/alerts")).text
    assert page.status_code == 200, page.text
    rows = _rows(page.text)
    assert {
        ("dataset", "dentalintel.production_kpis"),
        ("dataset", f"/Volumes/{cat}/bronze/landing/di-1/production_kpis/"),
        ("dataset", f"{cat}.bronze.production_kpis"),
        ("dataset", f"{cat}.silver.production_kpis"),
        ("dataset", f"{cat}.gold.monthly_kpis"),
        *{("job", f"{job}.{t}") for t in ("fetch_from_mcp", "load_bronze", "bronze_to_silver", "silver_to_gold")},
    } <= rows, rows
    assert sum(1 for kind, _ in rows if kind == "run") >= 4  # the task runs that built it
    assert rows == {(n["kind"], n["name"]) for n in graph["nodes"]}  # exactly what the API answered
    # the drawing: one box per node, one line per edge, layered left to right (the MCP entity left of gold)
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r'<a href="[^"]+" data-node=', svg)) == len(graph["nodes"])
    assert len(re.findall(r'<line [^>]*class="edge"', svg)) == len(graph["edges"]) > 0

    def x_of(name: str) -> float:
        (node,) = [n["id"] for n in graph["nodes"] if n["name"] == name]
        box = re.search(rf'data-node="{node}"[^>]*><title>[^<]*</title><rect x="(\d+)"', svg)
        assert box, name
        return float(box.group(1))

    order = ["dentalintel.production_kpis", f"/Volumes/{cat}/bronze/landing/di-1/production_kpis/",
             f"{cat}.bronze.production_kpis", f"{cat}.silver.production_kpis", f"{cat}.gold.monthly_kpis"]  # fmt: skip
    xs = [x_of(n) for n in order]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), xs
    # each node links to its own page; following the MCP entity's link re-centres on it (downstream reaches gold)
    link = re.search(r'<a href="([^"]+)">dentalintel\.production_kpis</a>', page.text)
    assert link, "no link to re-centre on the MCP entity"
    async with _signed_in(stack, tenant, ("analyst",)) as http:
        entity = await http.get(link.group(1).replace("&amp;", "&"))
    assert entity.status_code == 200 and ("dataset", f"{cat}.gold.monthly_kpis") in _rows(entity.text)
    assert 'id="lineage-node" value="dentalintel.production_kpis"' in entity.text
    assert _rows(upstream.text) == rows  # gold has nothing downstream yet: upstream is the whole graph
    assert empty.status_code == 200 and 'id="lineage-form"' in empty.text and "lineage-nodes" not in empty.text
    assert 'data-nav="lineage"' in tables_nav  # in the navigation of every page


async def test_refusals_of_the_lineage_api_are_shown_on_the_page(stack: Stack, tenant: str) -> None:
    async with _signed_in(stack, "someone-else", ("engineer",)) as http:
        other = await http.get("/console/lineage", params={"node": "gold.monthly_kpis", "tenant": tenant})
        unknown = await http.get("/console/lineage", params={"node": "gold.monthly_kpis"})
    assert other.status_code == 403 and f"not &#39;{tenant}&#39;" in other.text  # another tenant: refused
    assert "lineage-nodes" not in other.text
    assert unknown.status_code == 404 and 'id="lineage-error" data-status="404"' in unknown.text
    assert "no lineage node &#39;gold.monthly_kpis&#39; for tenant &#39;someone-else&#39;" in unknown.text
    # a role the lineage API does not serve (agent): the API's own 403, on the page
    async with _signed_in(stack, tenant, ("agent",)) as http:
        agent = await http.get("/console/lineage", params={"node": "gold.monthly_kpis"})
    assert agent.status_code == 403 and 'data-status="403"' in agent.text and "lineage-nodes" not in agent.text
    # an admin may look at any tenant's graph (the API checks the service token the console mints)
    async with _signed_in(stack, "ops-admins", ("admin",)) as http:
        admin = await http.get("/console/lineage", params={"node": "gold.monthly_kpis", "tenant": tenant})
    assert admin.status_code == 200 and ("dataset", f"{naming.catalog_name(tenant)}.gold.monthly_kpis") in _rows(
        admin.text
    )


def test_the_layout_layers_by_depth_and_still_draws_a_cycle() -> None:
    from apev_monitor.console import lineage_view

    def n(i: str, kind: str = "dataset") -> dict[str, str]:
        return {"id": i, "kind": kind, "name": f"cat.s.{i}" if kind == "dataset" else i, "namespace": "ns"}

    graph = {"nodes": [n("a"), n("r1", "run"), n("b"), n("j", "job"), n("r2", "run"), n("c")],
             "edges": [{"from": x, "to": y} for x, y in
                       [("a", "r1"), ("r1", "b"), ("j", "r1"), ("b", "r2"), ("r2", "c"), ("r2", "b")]]}  # fmt: skip
    view = lineage_view.layout(graph)
    layer = {p.id: p.layer for p in view.nodes}
    assert layer["a"] == layer["j"] == 0 and layer["r1"] == 1 and layer["b"] == 2  # b <-> r2 is a cycle, broken
    assert layer["r2"] == 3 and layer["c"] == 4 and len(view.edges) == 6
    markup = str(lineage_view.svg(view, {"b"}, lambda p: f"/x?node={p.name}&<"))
    assert markup.count("<a href=") == 6 and markup.count('class="edge"') == 6 and "&amp;&lt;" in markup
    assert 'data-node="b" data-kind="dataset"' in markup and 'stroke-width="3"' in markup  # the centre outlined
    assert "no nodes" in str(lineage_view.svg(lineage_view.layout({"nodes": [], "edges": []}), set(), str))
