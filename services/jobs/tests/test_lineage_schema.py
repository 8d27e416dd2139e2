"""The OpenLineage events the jobs service builds validate against the vendored OpenLineage JSON Schemas, and their
ids are stable (the outbox keeps one copy per OpenLineage run id and eventType)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from apev_contracts import RunFinished
from apev_contracts.events.runs import RunState, RunStatus, TaskRun
from apev_jobs.lineage import Catalog, LineageBuilder, RunRef, cloud_event

SPEC = Path(__file__).parent / "openlineage_spec"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _schemas() -> tuple[jsonschema.Draft202012Validator, dict[str, jsonschema.Draft202012Validator]]:
    """The core schema, and one validator per facet schema file (its name, e.g. `SchemaDatasetFacet`)."""
    docs = [json.loads(p.read_text()) for p in [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json"))]]
    registry: Registry[Any] = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
    checker = jsonschema.FormatChecker()
    core = jsonschema.Draft202012Validator(docs[0], registry=registry, format_checker=checker)
    facets = {
        d["$id"].rsplit("/", 1)[-1].removesuffix(".json"): jsonschema.Draft202012Validator(
            d, registry=registry, format_checker=checker
        )
        for d in docs[1:]
    }
    return core, facets


def validate_event(body: dict[str, Any]) -> int:
    """Validate one RunEvent against OpenLineage.json and each facet against its own schema (named by the facet's
    `_schemaURL`); returns how many facets were checked. A facet without a vendored schema fails."""
    core, facets = _schemas()
    core.validate(body)
    found: list[tuple[str, dict[str, Any]]] = [*body["run"].get("facets", {}).items(),
                                              *body["job"].get("facets", {}).items()]  # fmt: skip
    for d in [*body.get("inputs", []), *body.get("outputs", [])]:
        found += [*d.get("facets", {}).items(), *d.get("outputFacets", {}).items()]
    for key, facet in found:
        name = facet["_schemaURL"].split("#")[0].rsplit("/", 1)[-1].removesuffix(".json")
        assert name in facets, f"no vendored schema for facet {key!r} ({facet['_schemaURL']})"
        facets[name].validate({key: facet})
    return len(found)


def _finished(outcome: str = "success") -> RunFinished:
    result = {"success": "SUCCESS", "failure": "FAILED", "canceled": "CANCELED"}[outcome]
    tasks = [
        TaskRun(task_key=k, run_id=str(100 + i), attempt_number=0,
                state=RunState(life_cycle_state="TERMINATED", result_state="SUCCESS" if i < 2 else result,
                               state_message="" if i < 2 else "boom"),
                start_time=T0, end_time=T0)
        for i, k in enumerate(["fetch_from_mcp", "load_bronze", "bronze_to_silver", "quality_checks", "silver_to_gold"])
    ]  # fmt: skip
    return RunFinished(
        tenant_id="acme-dental", job_id="7", run_id="42", repair_attempt=0, kind="ingest", key="ds-1",
        job_name="ap:acme-dental:ingest:ds-1", tags={},
        job_parameters={"catalog": "other_catalog", "datasource_id": "ds-1", "system": "dentalintel",
                        "entities": "production_kpis,employees"},
        state=RunState(life_cycle_state="TERMINATED", result_state=result, state_message="boom"),
        status=RunStatus(state="TERMINATED"), outcome=outcome, tasks=tasks, start_time=T0, end_time=T0,
    )  # fmt: skip


REF = RunRef("acme-dental", "ap:acme-dental:ingest:ds-1", "ingest", "42")


def test_ingest_run_events_validate_and_name_the_flow() -> None:
    builder = LineageBuilder("https://adb-1.azuredatabricks.net")
    cat = "agentprovision_acme_dental"
    cols = {
        f"{cat}.gold.monthly_kpis": [("month", "DATE"), ("total_production", "DECIMAL(14,2)")],
        f"{cat}.silver.production_kpis": [("kpi_id", "STRING")],
        f"{cat}.silver.employees": [("employee_id", "STRING")],
    }
    # silver.payroll_runs is not in Unity Catalog: gold.payroll_summary (payroll_runs, employees) was not built
    catalog = Catalog(columns=cols, row_counts={"agentprovision_acme_dental.gold.monthly_kpis": 6})
    events = builder.finished(REF, _finished(), catalog)
    bodies = [cloud_event(REF, e).data.openlineage for e in events]
    assert sum(validate_event(b) for b in bodies) > 20
    assert [b["eventType"] for b in bodies] == ["START", "COMPLETE"] * 5 + ["COMPLETE"]
    job = bodies[-1]
    assert job["job"] == {"namespace": "databricks://adb-1.azuredatabricks.net", "name": REF.job_name,
                          "facets": job["job"]["facets"]}  # fmt: skip
    assert {i["name"] for i in job["inputs"]} == {"dentalintel.production_kpis", "dentalintel.employees"}
    assert {i["namespace"] for i in job["inputs"]} == {"mcp://acme-dental"}
    outputs = {o["name"]: o for o in job["outputs"]}
    # the catalog is the tenant's, whatever the run's parameters said
    assert "agentprovision_acme_dental.gold.monthly_kpis" in outputs and all("other_catalog" not in n for n in outputs)
    assert "agentprovision_acme_dental.gold.payroll_summary" not in outputs
    gold = outputs["agentprovision_acme_dental.gold.monthly_kpis"]
    assert gold["outputFacets"]["outputStatistics"]["rowCount"] == 6
    assert [f["name"] for f in gold["facets"]["schema"]["fields"]] == ["month", "total_production"]
    silver = bodies[5]  # bronze_to_silver's COMPLETE: bronze in, silver out, parent = the job's run
    assert silver["job"]["name"] == REF.job_name + ".bronze_to_silver"
    assert silver["run"]["facets"]["parent"]["run"]["runId"] == job["run"]["runId"]
    assert {o["name"] for o in silver["outputs"]} == {
        "agentprovision_acme_dental.silver.production_kpis",
        "agentprovision_acme_dental.silver.employees",
    }


def test_failed_run_fails_with_its_message_and_ids_are_stable() -> None:
    builder = LineageBuilder("https://adb-1.azuredatabricks.net")
    events = builder.finished(REF, _finished("failure"), Catalog())
    bodies = [cloud_event(REF, e).data.openlineage for e in events]
    for b in bodies:
        validate_event(b)
    assert bodies[-1]["eventType"] == "FAIL" and bodies[-1]["outputs"] == []
    assert bodies[-1]["run"]["facets"]["errorMessage"]["message"] == "boom"
    assert [b["eventType"] for b in bodies[4:6]] == ["START", "FAIL"]  # bronze_to_silver failed: no outputs
    assert bodies[5]["outputs"] == []
    again = [cloud_event(REF, e).id for e in builder.finished(REF, _finished("failure"), Catalog())]
    assert again == [cloud_event(REF, e).id for e in events] and len(set(again)) == len(again)
    aborted = builder.finished(REF, _finished("canceled"), Catalog())
    assert aborted[-1].eventType is not None and aborted[-1].eventType.value == "ABORT"


def test_start_and_agent_insights_reach_the_mcp_writeback() -> None:
    builder = LineageBuilder("http://127.0.0.1:8787")
    ref = RunRef("acme-dental", "ap:acme-dental:agent-insights:retention", "agent-insights", "9")
    params = {"config": json.dumps({"tables": ["gold.monthly_kpis", "x; DROP TABLE y"]})}
    start = [cloud_event(ref, e).data.openlineage for e in builder.started(ref, params, T0)]
    validate_event(start[0])
    assert start[0]["eventType"] == "START" and start[0]["job"]["namespace"] == "databricks://127.0.0.1:8787"
    assert [i["name"] for i in start[0]["inputs"]] == ["agentprovision_acme_dental.gold.monthly_kpis"]
    assert {(o["namespace"], o["name"]) for o in start[0]["outputs"]} == {
        ("databricks://127.0.0.1:8787", "agentprovision_acme_dental.gold.agent_insights"),
        ("mcp://acme-dental", "writeback"),
    }


async def test_file_transport_writes_the_events_as_openlineage_json(tmp_path: Path) -> None:
    from apev_jobs.lineage_transport import LineageTransport

    out = tmp_path / "lineage.ndjson"
    events = LineageBuilder("https://adb-1.azuredatabricks.net").finished(REF, _finished(), Catalog())
    await LineageTransport("file", file=str(out)).send(events)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [b["run"]["runId"] for b in lines] == [e.run.runId for e in events]
    for body in lines:
        validate_event(body)


def test_transport_settings_are_checked() -> None:
    import pytest

    from apev_jobs.lineage_transport import LineageTransport

    with pytest.raises(ValueError, match="JOBS_LINEAGE_URL"):
        LineageTransport("http")
    with pytest.raises(ValueError, match="kafka, http, file or none"):
        LineageTransport("carrier-pigeon")


def test_agent_deploy_names_its_model() -> None:
    builder = LineageBuilder("https://adb-1.azuredatabricks.net")
    ref = RunRef("acme-dental", "ap:acme-dental:agent-deploy:retention", "agent-deploy", "11")
    params = {
        "model_source": "/Workspace/apev/agents/demo_agent.py",
        "model_name": "agentprovision_acme_dental.gold.retention",
    }
    (start,) = [cloud_event(ref, e).data.openlineage for e in builder.started(ref, params, T0)]
    validate_event(start)
    assert [i["name"] for i in start["inputs"]] == ["/Workspace/apev/agents/demo_agent.py"]
    assert [o["name"] for o in start["outputs"]] == ["agentprovision_acme_dental.gold.retention"]
