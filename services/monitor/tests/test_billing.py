"""Cost from the local workspace's billing system tables: real job runs and a real serving endpoint fill
`system.billing.usage`; the sampler's `cost.sampled` is compared with a direct SQL sum over the same rows."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from databricks.sdk.service.serving import EndpointCoreConfigInput, EndpointTag, ServedEntityInput
from databricks.sdk.service.sql import StatementParameterListItem, StatementState

from apev_contracts import TenantOffboarded
from apev_contracts.envelope import new_event
from apev_sinks.testing import RunningSinks
from apev_workspace.serving.testing import register_version, wait_endpoint
from apev_workspace.testing import RunningWorkspace, py_task, running_workspace, upload, wait_run

from .conftest import BILLING_WEBHOOK, Stack, latency, monitor_stack, run_finished, unique

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

TENANT, AGENT = unique("bill"), "agent-7"
FALLBACK = unique("untagged")  # its job has no ap_tenant_id tag: attributed through run.finished
ENDPOINT = unique("ep-agent")
DIRECT_SQL = """
SELECT coalesce(u.custom_tags['ap_tenant_id'], CAST(u.usage_metadata.job_id AS STRING)) AS who,
       CAST(u.usage_date AS STRING) AS day, u.sku_name AS sku,
       CAST(SUM(u.usage_quantity * p.pricing.effective_list.default) AS STRING) AS usd,
       CAST(SUM(u.usage_quantity) AS STRING) AS dbus
FROM system.billing.usage u JOIN system.billing.list_prices p
  ON u.sku_name = p.sku_name AND u.cloud = p.cloud AND u.usage_unit = p.usage_unit
 AND u.usage_end_time >= p.price_start_time AND (p.price_end_time IS NULL OR u.usage_end_time < p.price_end_time)
GROUP BY 1, 2, 3
"""
SIX = Decimal("0.000001")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, _no_databricks_env: None) -> Iterator[RunningWorkspace]:
    with running_workspace(tmp_path_factory.mktemp("ws"), executor_slots=4) as ws:
        ws.workspace.serving.transition_seconds = 0.2
        yield ws


def sql(ws: RunningWorkspace, statement: str, **params: str) -> list[dict[str, Any]]:
    w = ws.client()
    warehouse = next(iter(w.warehouses.list())).id
    r = w.statement_execution.execute_statement(
        statement=statement,
        warehouse_id=warehouse,
        wait_timeout="30s",
        parameters=[StatementParameterListItem(name=k, value=v) for k, v in params.items()],
    )
    assert r.status is not None and r.status.state == StatementState.SUCCEEDED, r.status
    names = [c.name for c in r.manifest.schema.columns]  # type: ignore[union-attr]
    return [dict(zip(names, row, strict=True)) for row in r.result.data_array or []]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def stack(
    workspace: RunningWorkspace,
    kafka_bootstrap: str,
    pg_url: str,
    sinks: RunningSinks,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    tenants = tmp_path_factory.mktemp("tenants") / "tenants.yaml"
    tenants.write_text(
        f"tenants:\n  {TENANT}:\n    daily_dbu_budget: 0.0001\n  {FALLBACK}:\n    daily_dbu_budget: 1000\n"
    )
    async with monitor_stack(
        kafka_bootstrap,
        pg_url,
        sinks,
        tenants_file=tenants,
        databricks_host=workspace.host,
        databricks_token=workspace.admin_token,
    ) as s:
        yield s


@pytest.fixture(scope="module")
async def usage(workspace: RunningWorkspace, stack: Stack) -> dict[str, Any]:
    """Two tagged runs (one an agent's insights job), one untagged run, and an agent's endpoint that served."""
    w = workspace.client()
    path = upload(w, "/Shared/monitor-tests/work.py", "import time\ntime.sleep(1.5)\nprint('done')")
    tagged = w.jobs.create(
        name=f"ap:{TENANT}:adhoc:a", tasks=[py_task("t", path)], tags={"ap_tenant_id": TENANT, "ap_kind": "adhoc"}
    )
    insights = w.jobs.create(
        name=f"ap:{TENANT}:agent-insights:{AGENT}",
        tasks=[py_task("t", path)],
        tags={"ap_tenant_id": TENANT, "ap_kind": "agent-insights", "ap_agent_id": AGENT},
    )
    untagged = w.jobs.create(name=f"ap:{FALLBACK}:adhoc:b", tasks=[py_task("t", path)])
    runs = [w.jobs.run_now(j.job_id).run_id for j in (tagged, insights, untagged)]  # type: ignore[arg-type]
    version = register_version(workspace, "main.agents.monitor_echo", "def predict(inputs):\n    return {'ok': True}\n")
    w.serving_endpoints.create(
        name=ENDPOINT,
        config=EndpointCoreConfigInput(
            name=ENDPOINT,
            served_entities=[
                ServedEntityInput(
                    entity_name="main.agents.monitor_echo",
                    entity_version=str(version),
                    workload_size="Small",
                    scale_to_zero_enabled=False,
                )
            ],
        ),
        tags=[EndpointTag(key="ap_tenant_id", value=TENANT), EndpointTag(key="ap_agent_id", value=AGENT)],
    )
    wait_endpoint(w, ENDPOINT)
    for run_id in runs:
        wait_run(w, run_id)  # type: ignore[arg-type]
    time.sleep(1.0)
    w.serving_endpoints.delete(ENDPOINT)  # its worker stops: the usage is final
    # The jobs service would publish this; the monitor learns job -> tenant from it.
    now = stack.clock.now()
    owner = run_finished(FALLBACK, str(untagged.job_id), str(runs[2]), "success", now, key="b")
    invokes = [latency(TENANT, ENDPOINT, "r1", now - timedelta(seconds=10 * i), {50: 25, 100: 5}) for i in range(5)]
    await stack.send(owner, *invokes)
    await stack.consumed(owner, *invokes)
    return {"untagged_job": str(untagged.job_id), "invocations": 150}


def direct(ws: RunningWorkspace, usage: dict[str, Any]) -> dict[tuple[str, str, str], tuple[Decimal, Decimal]]:
    out: dict[tuple[str, str, str], tuple[Decimal, Decimal]] = {}
    for row in sql(ws, DIRECT_SQL):
        who = FALLBACK if row["who"] == usage["untagged_job"] else row["who"]
        if who in (TENANT, FALLBACK):
            out[(who, row["day"], row["sku"])] = (Decimal(row["dbus"]), Decimal(row["usd"]))
    return out


def latest(s: Stack) -> dict[tuple[str, str, str], Any]:
    best: dict[tuple[str, str, str], Any] = {}
    for e in s.published["cost.sampled"]:
        key = (e.data.tenant_id, e.data.usage_date.isoformat(), e.data.sku)
        if key not in best or best[key].data.revision < e.data.revision:
            best[key] = e
    return {k: v for k, v in best.items() if k[0] in (TENANT, FALLBACK)}


async def test_cost_samples_equal_a_direct_sql_sum_budget_alerts_once_and_corrections_update(
    stack: Stack, workspace: RunningWorkspace, usage: dict[str, Any]
) -> None:
    s = stack
    s.sinks.reset()
    result = await s.service.sample_costs()
    assert result is not None and result.published
    expected = direct(workspace, usage)
    assert {k[0] for k in expected} == {TENANT, FALLBACK}
    assert {k[2] for k in expected if k[0] == TENANT} == {
        "STANDARD_JOBS_COMPUTE",
        "PREMIUM_SERVERLESS_REAL_TIME_INFERENCE",
    }
    await s.wait_published("cost.sampled", lambda e: e.data.tenant_id in (TENANT, FALLBACK), n=len(expected))
    first = latest(s)
    assert set(first) == set(expected)
    for key, event in first.items():
        dbus, usd = expected[key]
        assert (event.data.dbus, event.data.dollars) == (dbus.quantize(SIX), usd.quantize(SIX)), key
        assert event.data.revision == 0 and isinstance(event.data.dollars, Decimal)
    again = await s.service.sample_costs()  # nothing changed: nothing new is published
    assert again is not None and not [x for x in again.published if x.tenant_id in (TENANT, FALLBACK)]

    for step in (1, 31, 301, 3600):
        await s.step(step)
    assert len(s.slack(TENANT, BILLING_WEBHOOK)) == 1 and len(s.mails(TENANT)) == 1
    assert s.slack(FALLBACK) == [] and s.mails(FALLBACK) == []
    assert "DBUs" in s.mails(TENANT)[0].subject

    today = datetime.now(UTC).date().isoformat()
    with workspace.admin_http() as http:
        r = http.post(
            "/__admin/billing/corrections",
            json={"usage_date": today, "factor": "0.5", "custom_tags": {"ap_tenant_id": TENANT}},
        )
        assert r.status_code == 200, r.text
    await s.service.sample_costs()
    expected = direct(workspace, usage)
    await s.wait_published("cost.sampled", lambda e: e.data.tenant_id == TENANT and e.data.revision == 1, n=2)
    corrected = latest(s)
    for key, event in corrected.items():
        dbus, usd = expected[key]
        assert (event.data.dbus, event.data.dollars) == (dbus.quantize(SIX), usd.quantize(SIX)), key
        if key[0] == TENANT:
            assert event.data.revision == 1 and event.id != first[key].id
        else:
            assert event.id == first[key].id  # the untagged tenant's usage was not corrected

    async with s.http(TENANT, ("analyst",)) as http:
        days = (await http.get(f"/api/v1/monitor/tenants/{TENANT}/cost")).json()["days"]
        total = sum(usd for (who, _, _), (_, usd) in expected.items() if who == TENANT)
        assert [d["dollars"] for d in days] == [
            str(sum(e.data.dollars for k, e in corrected.items() if k[0] == TENANT))
        ]
        assert abs(Decimal(days[0]["dollars"]) - total) <= SIX * 2
        assert (await http.get(f"/api/v1/monitor/tenants/{FALLBACK}/cost")).status_code == 403


async def test_cost_per_1000_invocations_matches_a_hand_computation(
    stack: Stack, workspace: RunningWorkspace, usage: dict[str, Any]
) -> None:
    s = stack
    await s.service.sample_costs()
    rows = workspace.workspace.billing.billing_tables()["usage"].rows
    price = Decimal("0.50")  # the local workspace's list price for every SKU
    dollars = sum(
        Decimal(str(r["usage_quantity"])) * price for r in rows if r["custom_tags"].get("ap_agent_id") == AGENT
    )
    assert dollars > 0
    by_product = {r["billing_origin_product"] for r in rows if r["custom_tags"].get("ap_agent_id") == AGENT}
    assert by_product == {"JOBS", "MODEL_SERVING"}  # its insights job and its endpoint
    hand = dollars * 1000 / usage["invocations"]
    async with s.http(TENANT, ("analyst",)) as http:
        (agent,) = (await http.get(f"/api/v1/monitor/tenants/{TENANT}/agents/cost-per-1k")).json()["agents"]
    assert agent["agent_id"] == AGENT and agent["invocations"] == usage["invocations"]
    assert abs(Decimal(agent["dollars_per_1k"]) - hand) < Decimal("1e-12"), (agent, hand)


async def test_offboarding_publishes_a_final_cost_sample_of_the_last_usage(
    stack: Stack, workspace: RunningWorkspace, usage: dict[str, Any]
) -> None:
    s = stack
    await s.service.sample_costs()  # everything so far is sampled
    before = len([e for e in s.published["cost.sampled"] if e.data.tenant_id == TENANT])
    w = workspace.client()
    path = upload(w, "/Shared/monitor-tests/last.py", "import time\ntime.sleep(1.0)\nprint('last')")
    last = w.jobs.create(
        name=f"ap:{TENANT}:adhoc:last", tasks=[py_task("t", path)], tags={"ap_tenant_id": TENANT, "ap_kind": "adhoc"}
    )
    wait_run(w, w.jobs.run_now(last.job_id).run_id)  # type: ignore[arg-type]
    offboarded = new_event(TenantOffboarded(tenant_id=TENANT), tenant_id=TENANT, source="tests/monitor")
    await s.send(offboarded)
    await s.wait_published("cost.sampled", lambda e: e.data.tenant_id == TENANT, n=before + 1)
    final = latest(s)
    expected = direct(workspace, usage)
    key = next(k for k in expected if k[0] == TENANT and k[2] == "STANDARD_JOBS_COMPUTE")
    dbus, usd = expected[key]
    assert (final[key].data.dbus, final[key].data.dollars) == (dbus.quantize(SIX), usd.quantize(SIX))
    assert final[key].data.revision >= 1


async def test_the_sample_route_is_admin_only_and_publishes_what_changed(
    stack: Stack, workspace: RunningWorkspace, usage: dict[str, Any]
) -> None:
    s = stack
    await s.service.sample_costs()  # everything so far is sampled
    async with s.http(TENANT, ("engineer",)) as http:
        assert (await http.post("/api/v1/monitor/cost/samples")).status_code == 403
    async with s.http(TENANT, ("admin",)) as http:
        unchanged = await http.post("/api/v1/monitor/cost/samples")
        assert unchanged.status_code == 200, unchanged.text
        assert unchanged.json() == {"tenant_id": TENANT, "published": []}
        w = workspace.client()
        path = upload(w, "/Shared/monitor-tests/route.py", "import time\ntime.sleep(0.5)\nprint('route')")
        job = w.jobs.create(name=f"ap:{TENANT}:adhoc:route", tasks=[py_task("t", path)], tags={"ap_tenant_id": TENANT})
        wait_run(w, w.jobs.run_now(job.job_id).run_id)  # type: ignore[arg-type]
        got = await http.post("/api/v1/monitor/cost/samples")
        assert got.status_code == 200, got.text
        (sample,) = [x for x in got.json()["published"] if x["sku"] == "STANDARD_JOBS_COMPUTE"]
    expected = direct(workspace, usage)
    dbus, usd = expected[(TENANT, sample["usage_date"], "STANDARD_JOBS_COMPUTE")]
    assert (Decimal(sample["dbus"]), Decimal(sample["dollars"])) == (dbus.quantize(SIX), usd.quantize(SIX))
    assert {x["tenant_id"] for x in got.json()["published"]} == {TENANT}
    revision = sample["revision"]
    await s.wait_published(
        "cost.sampled",
        lambda e: e.data.tenant_id == TENANT and e.data.revision == revision and e.data.sku == "STANDARD_JOBS_COMPUTE",
    )
