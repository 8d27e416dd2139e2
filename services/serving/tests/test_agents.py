"""Agents end to end: register -> deploy run (jobs service, local workspace) -> endpoint READY -> invoke, whose
numbers are those of a direct SQL query over gold; the agent principal's grants; tenant isolation."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from databricks.sdk.service import sql as dbsql

from apev_contracts import naming
from apev_pipeline.agents import demo_agent_path

from .conftest import Stack, sql

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]


def _numbers(text: str) -> set[Decimal]:
    return {Decimal(n) for n in re.findall(r"\d+\.\d+", text)}


async def test_register_deploy_invoke_answers_with_the_gold_numbers(stack: Stack, demo: dict[str, Any]) -> None:
    w = stack.ws.client()
    cat = naming.catalog_name("tenant-a")
    agent = demo["agent"]
    assert agent["endpoint"]["ready"] == "READY"
    assert [(v["version"], v["state"], v["answer_accuracy"], v["reason"]) for v in agent["versions"]] == [
        (1, "serving", 1.0, None)
    ]
    assert agent["endpoint"]["traffic"] == [{"served_entity_name": "v1", "traffic_percentage": 100}]
    expected = sql(
        w,
        f"SELECT practice_location, CAST(sum(collections) AS DECIMAL(18,2)) FROM {cat}.gold.monthly_kpis "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
    )
    async with stack.http() as http:
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert r.json()["served_entity"] == "v1"
        (cited,) = out["citations"]
        assert cited["table"] == f"{cat}.gold.monthly_kpis"
        assert [[row[0], row[1]] for row in cited["rows"]] == expected
        for location, collections in expected:
            assert f"{location} with {collections}" in out["answer"]
        assert _numbers(out["answer"]) == {Decimal(str(c)) for _, c in expected}

        rates = sql(
            w,
            f"SELECT practice_location, collection_rate FROM {cat}.gold.monthly_kpis "
            f"WHERE month = (SELECT max(month) FROM {cat}.gold.monthly_kpis) ORDER BY 2 DESC, 1",
        )
        r = await stack.invoke(http, "demo", "What is the collection rate of each location?")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert [[row[0], row[2]] for row in out["citations"][0]["rows"]] == rates
        assert _numbers(out["answer"]) == {Decimal(str(v)) for _, v in rates}

        payroll = sql(
            w,
            f"SELECT practice_location, gross_pay, net_pay FROM {cat}.gold.payroll_summary "
            f"WHERE month = (SELECT max(month) FROM {cat}.gold.payroll_summary) ORDER BY 2 DESC, 1",
        )
        r = await stack.invoke(http, "demo", "Give me the payroll summary")
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert [[row[0], row[2], row[3]] for row in out["citations"][0]["rows"]] == payroll
        for location, gross, net in payroll:
            assert f"{location} {gross} gross, {net} net" in out["answer"]


async def test_agent_principal_reads_only_its_tables(stack: Stack, demo: dict[str, Any]) -> None:
    w = stack.ws.client()
    app_id = demo["registered"]["principal_id"]
    token = w.token_management.create_obo_token(application_id=app_id, lifetime_seconds=600).token_value
    agent = stack.ws.client(token=token)
    wh = str(next(iter(w.warehouses.list())).id)

    def run(statement: str) -> dbsql.StatementResponse:
        return agent.statement_execution.execute_statement(statement=statement, warehouse_id=wh, wait_timeout="30s")

    a, b = naming.catalog_name("tenant-a"), naming.catalog_name("tenant-b")
    for table in ("monthly_kpis", "payroll_summary"):
        assert run(f"SELECT count(*) FROM {a}.gold.{table}").status.state == dbsql.StatementState.SUCCEEDED
    for table in (f"{a}.gold.financial_summary", f"{b}.gold.monthly_kpis", f"{b}.gold.payroll_summary"):
        done = run(f"SELECT count(*) FROM {table}")
        assert done.status.state == dbsql.StatementState.FAILED, table
        assert "INSUFFICIENT_PERMISSIONS" in done.status.error.message or "PERMISSION" in done.status.error.message
    tables = {t.full_name for t in w.tables.list(catalog_name=a, schema_name="gold")}
    allowed = set()
    for full in tables:
        grants = w.grants.get_effective("table", full, principal=app_id).privilege_assignments or []
        if any(p.privilege and p.privilege.value == "SELECT" for g in grants for p in g.privileges or []):
            allowed.add(full.rsplit(".", 1)[-1])
    assert allowed == {"monthly_kpis", "payroll_summary", "agent_insights"}  # agent_insights: its own output


async def test_other_tenant_cannot_invoke_or_read_and_limits_apply(stack: Stack, demo: dict[str, Any]) -> None:
    async with stack.http("tenant-b") as http:
        r = await http.get("/api/v1/agents/demo")
        assert r.status_code == 403, r.text
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 403, r.text
        r = await http.post(
            "/api/v1/agents",
            json={"name": "x", "model_source": "/Shared/x.py", "tables": ["agentprovision_tenant_a.gold.monthly_kpis"]},
        )
        assert r.status_code == 403, r.text


async def test_a_new_version_rolls_without_a_failed_invoke(stack: Stack, demo: dict[str, Any]) -> None:
    from apev_pipeline.agents import demo_agent_path
    from apev_workspace.testing import upload

    w = stack.ws.client()
    with w.workspace.download(demo_agent_path()) as f:
        code = f.read().decode()
    source = upload(w, "/Shared/serving-tests/demo_agent_v2.py", code + "\n# version 2\n")
    stop = asyncio.Event()
    seen: list[tuple[int, str | None]] = []

    async def client() -> None:
        async with stack.http() as http:
            while not stop.is_set():
                r = await stack.invoke(http, "demo", "What are our top performing locations?")
                seen.append((r.status_code, r.json().get("served_entity") if r.status_code == 200 else r.text))

    clients = [asyncio.create_task(client()) for _ in range(2)]
    try:
        async with stack.http() as http:
            r = await http.post("/api/v1/agents/demo/versions", json={"model_source": source})
            assert r.status_code == 202, r.text
        body = await stack.wait_agent("demo", timeout=120, version=2)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert [s for s in seen if s[0] != 200] == []
    entities = [e for _, e in seen]
    assert "v1" in entities and entities[-1] == "v2" and len(seen) > 10, entities
    assert {v["version"]: v["state"] for v in body["versions"]} == {1: "retired", 2: "serving"}
    assert body["endpoint"]["traffic"] == [{"served_entity_name": "v2", "traffic_percentage": 100}]


def _mlflow_run(stack: Stack, run_id: str) -> Any:
    """The run as the real `mlflow` client reads it (tracking URI `databricks`, the workspace in the env)."""
    import mlflow

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DATABRICKS_HOST", stack.ws.host)
        env.setenv("DATABRICKS_TOKEN", stack.ws.admin_token)
        return mlflow.MlflowClient(tracking_uri="databricks").get_run(run_id)


async def test_each_version_links_to_its_mlflow_run_with_the_smoke_metrics(stack: Stack, demo: dict[str, Any]) -> None:
    import httpx

    (v1,) = [v for v in (await stack.agent("demo"))["versions"] if v["version"] == 1]
    run = await asyncio.to_thread(_mlflow_run, stack, v1["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.experiment_id == v1["experiment_id"]
    assert run.data.metrics["answer_accuracy"] == 1.0 and run.data.metrics["questions"] == 3.0
    assert 0 < run.data.metrics["latency_mean_ms"] <= run.data.metrics["latency_p95_ms"] == v1["latency_p95_ms"]
    params = run.data.params
    assert params["model_version"] == "1" and params["job_run_id"] == v1["run_id"]
    assert params["model_source"] == demo_agent_path() and params["accuracy_threshold"] == "0.8"
    assert params["tables"] == "gold.monthly_kpis,gold.payroll_summary"
    assert run.data.tags["ap_agent_id"] == "demo" and run.data.tags["ap_smoke"] == "passed"
    w = stack.ws.client()
    version = w.model_versions.get(demo["registered"]["model_name"], 1)
    assert version.run_id == v1["mlflow_run_id"]  # registered with its run
    experiment = w.experiments.get_experiment(v1["experiment_id"]).experiment
    assert experiment is not None
    assert experiment.name == f"/Users/{demo['registered']['principal_id']}/agentprovision/demo"
    url = v1["mlflow_run_url"]
    assert url == f"{stack.ws.host}/#mlflow/experiments/{v1['experiment_id']}/runs/{v1['mlflow_run_id']}"
    page = httpx.get(f"{stack.ws.host}/mlflow/experiments/{v1['experiment_id']}/runs/{v1['mlflow_run_id']}")
    assert page.status_code == 200 and "answer_accuracy" in page.text and demo_agent_path() in page.text
    job_run = w.jobs.get_run(int(v1["run_id"]))
    assert job_run.tasks is not None
    output = w.jobs.get_run_output(int(job_run.tasks[0].run_id or 0)).logs or ""
    (line,) = [x for x in output.splitlines() if x.startswith("smoke test: ")]
    summary = json.loads(line.removeprefix("smoke test: "))
    assert summary["mlflow_run_id"] == v1["mlflow_run_id"] and summary["wrong"] == {}
    print(
        f"agent-deploy run: {(job_run.execution_duration or 0) / 1000:.1f} s; mlflow import"
        f" {summary['mlflow_import_seconds']} s, mlflow setup (import, experiment, run, params)"
        f" {summary['mlflow_setup_seconds']} s"
    )


WRONG = (
    "def predict(inputs):\n"
    "    return {'answer': 'Our best location is eastlake_001, about 100 thousand.', 'citations': []}\n"
)


async def test_a_version_below_the_accuracy_threshold_is_not_rolled_out(stack: Stack, demo: dict[str, Any]) -> None:
    from apev_workspace.testing import upload

    before = await stack.agent("demo")
    (serving_now,) = [v["version"] for v in before["versions"] if v["state"] == "serving"]
    w = stack.ws.client()
    source = upload(w, "/Shared/serving-tests/demo_agent_wrong.py", WRONG)
    async with stack.http() as http:
        r = await http.post("/api/v1/agents/demo/versions", json={"model_source": source})
        assert r.status_code == 202, r.text
        for _ in range(1200):
            body = await stack.agent("demo")
            if any(v["state"] == "rejected" for v in body["versions"]):
                break
            await asyncio.sleep(0.1)
        (rejected,) = [v for v in body["versions"] if v["state"] == "rejected"]
        assert rejected["version"] == serving_now + 1 and rejected["answer_accuracy"] == 0.0
        assert rejected["reason"] == "answer_accuracy 0.000 is below the threshold 0.800"
        assert body["state"] == "serving" and f"version {rejected['version']} not rolled out" in body["error"]
        assert [v["version"] for v in body["versions"] if v["state"] == "serving"] == [serving_now]
        assert [e["entity_version"] for e in body["endpoint"]["served_entities"]] == [str(serving_now)]
        assert body["endpoint"]["traffic"] == [{"served_entity_name": f"v{serving_now}", "traffic_percentage": 100}]
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 200 and r.json()["served_entity"] == f"v{serving_now}", r.text
        assert r.json()["output"]["citations"][0]["rows"]
    alias = w.model_versions.get_by_alias(demo["registered"]["model_name"], "serving")
    assert alias.version == serving_now  # the insights job keeps running the served version
    run = await asyncio.to_thread(_mlflow_run, stack, rejected["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["answer_accuracy"] == 0.0
    assert run.data.tags["ap_smoke"] == "below_threshold" and run.data.params["model_source"] == source
    assert set(json.loads(run.data.tags["ap_wrong"])) == {"top_locations", "collection_rate", "payroll_summary"}


ECHO = "VERSION = {v!r}\n\n\ndef predict(inputs):\n    return {{'version': VERSION, 'echo': inputs}}\n"


async def test_ab_split_80_20_over_1000_calls_and_update_failed(stack: Stack, demo: dict[str, Any]) -> None:
    import httpx

    from apev_workspace.serving.testing import register_version

    model = f"{naming.catalog_name('tenant-a')}.agents.echo"
    v1, v2 = [await asyncio.to_thread(register_version, stack.ws, model, ECHO.format(v=v)) for v in ("1", "2")]
    body = {
        "name": "ab-echo",
        "served_entities": [
            {"name": "a", "entity_name": model, "entity_version": str(v1)},
            {"name": "b", "entity_name": model, "entity_version": str(v2)},
        ],
        "traffic": [
            {"served_entity_name": "a", "traffic_percentage": 80},
            {"served_entity_name": "b", "traffic_percentage": 20},
        ],
    }
    async with stack.http() as http:
        r = await http.post("/api/v1/databricks/serving-endpoints", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["ready"] == "READY" and r.json()["progress"][-1]["config_update"] == "NOT_UPDATING"
        assert r.json()["traffic"] == body["traffic"]
        async with stack.http("tenant-b") as other:
            assert (await other.get("/api/v1/databricks/serving-endpoints/ab-echo")).status_code == 403
            taken = {**body, "served_entities": [{"entity_name": model, "entity_version": "1"}], "traffic": None}
            assert (await other.post("/api/v1/databricks/serving-endpoints", json=taken)).status_code == 403

    counts: dict[str, int] = {}
    auth = {"Authorization": f"Bearer {stack.ws.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.ws.host, headers=auth, timeout=30) as ws_http:
        sem = asyncio.Semaphore(8)

        async def call(i: int) -> None:
            async with sem:
                r = await ws_http.post("/serving-endpoints/ab-echo/invocations", json={"dataframe_records": [{"i": i}]})
                assert r.status_code == 200, r.text
                counts[r.headers["served-model-name"]] = counts.get(r.headers["served-model-name"], 0) + 1

        await asyncio.gather(*(call(i) for i in range(1000)))
    assert sum(counts.values()) == 1000
    assert abs(counts["a"] - 800) <= 50 and abs(counts["b"] - 200) <= 50, counts

    broken = await asyncio.to_thread(register_version, stack.ws, model, "raise ImportError('no such module: torch')\n")
    failing = {**body, "served_entities": [{"name": "c", "entity_name": model, "entity_version": str(broken)}]}
    failing["traffic"] = None
    async with stack.http() as http:
        r = await http.post("/api/v1/databricks/serving-endpoints", json=failing)
        assert r.status_code == 502, r.text
        assert r.json()["error"] == "update_failed" and "torch" in r.json()["detail"], r.json()
        still = (await http.get("/api/v1/databricks/serving-endpoints/ab-echo")).json()
    assert still["config_update"] == "UPDATE_FAILED" and [e["name"] for e in still["served_entities"]] == ["a", "b"]


async def test_scale_request_raises_once_within_the_cooldown(stack: Stack, demo: dict[str, Any]) -> None:
    from sqlalchemy import select

    from apev_contracts import EndpointScaleRequested
    from apev_contracts.envelope import new_event
    from apev_runtime.db.tables import inbox

    def request() -> Any:
        data = EndpointScaleRequested(
            tenant_id="tenant-a", endpoint_name="agent-demo", rule="model_serving_latency", reason="p95 > 500 ms"
        )
        return new_event(data, tenant_id="tenant-a", source="tests/serving")

    async def consumed(event_id: str) -> bool:
        async with stack.serving.db.engine.connect() as conn:
            return (
                await conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == event_id))
            ).first() is not None

    first, second = request(), request()
    await stack.send(first)
    for _ in range(600):
        if await consumed(first.id):
            break
        await asyncio.sleep(0.05)
    w = stack.ws.client()
    sizes = [e.workload_size for e in w.serving_endpoints.get("agent-demo").config.served_entities]
    assert sizes == ["Medium"]
    await stack.send(second)
    for _ in range(600):
        if await consumed(second.id):
            break
        await asyncio.sleep(0.05)
    assert await consumed(second.id)
    assert [e.workload_size for e in w.serving_endpoints.get("agent-demo").config.served_entities] == ["Medium"]
    async with stack.http() as http:
        ep = (await http.get("/api/v1/databricks/serving-endpoints/agent-demo")).json()
        assert (ep["workload_size"], ep["scale_count"]) == ("Medium", 1)
        r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 200, r.text


async def test_tenant_concurrency_limit_gives_429_with_retry_after(stack: Stack, demo: dict[str, Any]) -> None:
    stack.serving.settings.tenant_concurrency_overrides["tenant-a"] = 2
    stack.ws.add_fault(path="/serving-endpoints/agent-demo/invocations", action="latency", latency_ms=600, count=2)
    try:
        async with stack.http() as http:
            answers = await asyncio.gather(
                *(stack.invoke(http, "demo", "What are our top performing locations?") for _ in range(6))
            )
    finally:
        stack.serving.settings.tenant_concurrency_overrides.pop("tenant-a")
        stack.ws.clear_faults()
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}, codes
    throttled = next(r for r in answers if r.status_code == 429)
    assert throttled.headers["Retry-After"] == "1" and throttled.json()["error"] == "too_many_requests"


async def test_scaled_to_zero_endpoint_wakes_on_first_invoke(stack: Stack, demo: dict[str, Any]) -> None:
    serving = stack.ws.workspace.serving
    entity = (await stack.agent("demo"))["endpoint"]["served_entities"][0]["name"]
    serving.idle_seconds = 0.3
    try:
        for _ in range(200):
            if serving.replica("agent-demo", entity).state == "stopped":
                break
            await asyncio.sleep(0.05)
        assert serving.replica("agent-demo", entity).state == "stopped"
        serving.idle_seconds = 1800
        starts = serving.replica("agent-demo", entity).starts
        async with stack.http() as http:
            r = await stack.invoke(http, "demo", "What are our top performing locations?")
        assert r.status_code == 200, r.text
        assert r.json()["output"]["citations"][0]["rows"]
        assert serving.replica("agent-demo", entity).starts == starts + 1
    finally:
        serving.idle_seconds = 1800


async def test_insights_job_appends_each_insight_once(stack: Stack, demo: dict[str, Any]) -> None:
    from apev_contracts import JobRequested
    from apev_contracts.envelope import new_event

    w = stack.ws.client()
    table = f"{naming.catalog_name('tenant-a')}.gold.agent_insights"

    def rows() -> list[list[str | None]]:
        return sql(w, f"SELECT kind, entity_id, review_required, run_id FROM {table} ORDER BY kind, entity_id")

    async def run_once() -> None:
        job = next(iter(w.jobs.list(name="ap:tenant-a:agent-insights:demo")))
        before = len(list(w.jobs.list_runs(job_id=job.job_id, completed_only=True)))
        data = JobRequested(tenant_id="tenant-a", kind="agent-insights", key="demo", agent_id="demo",
                            action={"type": "run"})  # fmt: skip
        await stack.send(new_event(data, tenant_id="tenant-a", source="tests/serving"))
        for _ in range(1200):
            done = list(w.jobs.list_runs(job_id=job.job_id, completed_only=True))
            if len(done) > before:
                assert done[0].state.result_state.value == "SUCCESS", done[0].state
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the insights run did not finish")

    await run_once()
    first = rows()
    assert [(k, e, r) for k, e, r, _ in first] == [
        ("collection_rate_fell", "northgate_002", "false"),
        ("payroll_anomaly", "PR-003-0003", "true"),  # riverside_003's largest run of its anomalous month
    ]
    await run_once()
    assert rows() == first  # stable insight ids: the second run appends nothing


async def test_latency_samples_add_up_to_the_invokes(stack: Stack, demo: dict[str, Any]) -> None:
    from apev_contracts.events.serving import merge_buckets

    async with stack.http() as http:
        for _ in range(5):
            assert (await stack.invoke(http, "demo", "What are our top performing locations?")).status_code == 200
    await asyncio.sleep(2.5)  # two 1 s windows and the relay
    by_endpoint: dict[str, list[Any]] = {}
    for e in stack.latency:
        by_endpoint.setdefault(e.data.endpoint_name, []).append(e.data)
    made = stack.invokes["agent-demo"]
    samples = by_endpoint["agent-demo"]
    assert sum(s.count for s in samples) == made, (made, [s.count for s in samples])
    assert sum(merge_buckets(*samples)) == made
    assert len({e.id for e in stack.latency}) == len(stack.latency)
    assert all(s.replica_id == stack.serving.settings.replica_id for s in samples)
    agent = await stack.agent("demo")
    assert agent["latency"]["count"] == made and agent["latency"]["p95_ms"] is not None
    lat = agent["latency"]
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]  # bucket bounds, ordered
    assert sum(w["count"] for w in lat["series"]) <= made and lat["series"]  # one point per published window
    assert all(w["p99_ms"] is not None for w in lat["series"])
    async with stack.http() as http:
        listed = (await http.get("/api/v1/agents")).json()["agents"]  # the console's list: the tenant's agents
    assert "demo" in {a["agent_id"] for a in listed}
    assert all(a["tenant_id"] == agent["tenant_id"] for a in listed)
    async with stack.http("tenant-b") as http:
        assert "demo" not in {a["agent_id"] for a in (await http.get("/api/v1/agents")).json()["agents"]}
    async with stack.http() as http:
        metrics = (await http.get("/metrics")).text
    count = re.search(r'apev_serving_invoke_latency_ms_count\{endpoint="agent-demo"\} (\d+)', metrics)
    assert count is not None and int(float(count.group(1))) == made
    q = sorted(s.sum_ms / s.count for s in samples)
    print(
        f"latency: {made} invokes in {len(samples)} windows; window means ms {q[0]:.1f}..{q[-1]:.1f};"
        f" p50 bucket {agent['latency']['p50_ms']} ms, p95 bucket {agent['latency']['p95_ms']} ms"
    )
