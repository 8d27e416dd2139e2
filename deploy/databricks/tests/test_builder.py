"""The builder alone: names, tags, DAG, parameters, run-as, warehouse, file hashes."""

from __future__ import annotations

import pytest

from apev_contracts.common import Schedule
from apev_contracts.errors import ContractError
from apev_contracts.events.jobs import JobRequested
from apev_pipeline import IngestJobInput, build_ingest_job


def _build(**over: object):  # type: ignore[no-untyped-def]
    spec = {
        "tenant_id": "acme-1",
        "datasource_id": "ds-adp",
        "system": "adp",
        "entities": ["employees", "payroll_runs"],
    }
    return build_ingest_job(IngestJobInput(**(spec | over)))  # type: ignore[arg-type]


def test_job_spec_follows_section_8() -> None:
    built = _build(schedule=Schedule(quartz_cron_expression="0 0 * * * ?"), freshness_minutes=30, warehouse_id="wh1")
    job = built.job
    assert built.name == "ap:acme-1:ingest:ds-adp"
    assert job.tags == {"ap_tenant_id": "acme-1", "ap_kind": "ingest", "ap_datasource_id": "ds-adp"}
    assert job.run_as == "tenant_acme_1_pipeline"
    order = {t.task_key: [d.task_key for d in t.depends_on] for t in job.tasks}
    assert order == {
        "fetch_from_mcp": [],
        "load_bronze": ["fetch_from_mcp"],
        "bronze_to_silver": ["load_bronze"],
        "quality_checks": ["bronze_to_silver"],
        "silver_to_gold": ["quality_checks"],
    }
    params = {p.name: p.default for p in job.parameters}
    assert params["catalog"] == "agentprovision_acme_1" and params["secret_scope"] == "agentprovision_acme_1"
    assert params["entities"] == "employees,payroll_runs" and params["freshness_minutes"] == "30"
    assert all(t.sql_task.warehouse_id == "wh1" for t in job.tasks if t.sql_task)
    assert job.timeout_seconds > 0 and job.tasks[0].max_retries == 2 and job.max_concurrent_runs == 1
    assert job.schedule is not None and job.schedule.quartz_cron_expression == "0 0 * * * ?"
    request = built.request(run=True)
    assert isinstance(request, JobRequested) and request.job_name == built.name and request.action.type == "run"
    # every file a task names is in the list
    named = {t.python_task.python_file for t in job.tasks if t.python_task} | {
        t.sql_task.file for t in job.tasks if t.sql_task
    }
    assert named <= {f.path for f in built.files}


def test_file_hashes_change_only_with_content() -> None:
    one, same, other = _build(), _build(), _build(entities=["employees"])
    assert [(f.path, f.sha256) for f in one.files] == [(f.path, f.sha256) for f in same.files]
    changed = {f.path for f in one.files if f not in other.files}
    assert changed == {f.path for f in one.files if f.path.endswith(("load_bronze.sql", "bronze_to_silver.sql"))}
    shared = [f for f in one.files if "/tenants/" not in f.path]
    assert shared == [f for f in _build(tenant_id="other").files if "/tenants/" not in f.path]


def test_pii_is_masked_in_silver_sql_and_absent_from_gold_sql() -> None:
    built = _build()
    silver = next(f.content for f in built.files if f.path.endswith("bronze_to_silver.sql"))
    for column in ("ssn_last_four", "annual_salary", "date_of_birth"):
        assert f"ALTER COLUMN {column} SET MASK agentprovision_acme_1.silver.pii_" in silver
    assert "is_account_group_member('tenant_acme_1_engineers')" in silver
    for gold in (f for f in built.files if "/gold/" in f.path):
        code = "\n".join(line.split("--")[0] for line in gold.content.lower().splitlines())
        assert not any(c in code for c in ("ssn", "salary", "date_of_birth")), gold.path


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"entities": ["payroll"]}, ValueError),
        ({"entities": []}, ValueError),
        ({"tenant_id": "Not_A_Tenant"}, ContractError),
        ({"datasource_id": "bad:key"}, ContractError),
        ({"freshness_minutes": 0}, ValueError),
    ],
)
def test_bad_input_is_refused_naming_it(over: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        _build(**over)
