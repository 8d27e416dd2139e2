"""Realistic example payloads of every event, shipped with the package so other teams' tests can use them too.

Pure data, no I/O: `example_payloads()` builds a fresh dict each call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from pydantic import BaseModel

from apev_contracts.events import (
    CostSampled,
    DatasourceCreated,
    DatasourceRemoved,
    DatasourceUpdated,
    EndpointScaleRequested,
    ErasureRequested,
    InsightCreated,
    JobRequested,
    LineageEmitted,
    RunFinished,
    ServingLatencySampled,
    TenantOffboarded,
    WritebackOutcomeRecorded,
)

TENANT = "acme-dental"
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def example_payloads() -> dict[type[BaseModel], BaseModel]:
    """Model class -> one valid payload, for tenant `acme-dental`."""
    return {
        DatasourceCreated: DatasourceCreated(
            tenant_id=TENANT,
            datasource_id="ds-adp-1",
            name="ADP payroll",
            system="adp",
            entities=["employees", "payroll"],
            schedule={"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "America/Los_Angeles"},
            mcp_tenant_code="ACME",
            config={"locations": ["SF", "LA"], "full_refresh": False},
        ),
        JobRequested: JobRequested(
            tenant_id=TENANT,
            kind="ingest",
            key="ds-adp-1",
            datasource_id="ds-adp-1",
            job={
                "tasks": [
                    {"task_key": "fetch_from_mcp", "python_task": {"python_file": "/Workspace/ap/fetch_from_mcp.py"}},
                    {
                        "task_key": "load_bronze",
                        "depends_on": [{"task_key": "fetch_from_mcp"}],
                        "sql_task": {"file": "/Workspace/ap/load_bronze.sql", "parameters": {"catalog": "x"}},
                    },
                ],
                "parameters": [{"name": "entity", "default": "employees"}],
                "schedule": {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "UTC"},
                "tags": {"ap_tenant_id": TENANT, "ap_kind": "ingest"},
                "timeout_seconds": 3600,
            },
            action={"type": "run", "job_parameters": {"entity": "payroll"}},
        ),
        RunFinished: RunFinished(
            tenant_id=TENANT,
            job_id="1001",
            run_id="5001",
            repair_attempt=0,
            kind="ingest",
            key="ds-adp-1",
            job_name=f"ap:{TENANT}:ingest:ds-adp-1",
            tags={"ap_tenant_id": TENANT},
            job_parameters={"entity": "payroll"},
            state={"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": "boom"},
            status={
                "state": "TERMINATED",
                "termination_details": {"code": "RUN_EXECUTION_ERROR", "type": "CLIENT_ERROR", "message": "boom"},
            },
            outcome="failure",
            tasks=[
                {
                    "task_key": "fetch_from_mcp",
                    "run_id": "5002",
                    "state": {"life_cycle_state": "TERMINATED", "result_state": "FAILED"},
                    "start_time": T0,
                    "end_time": T0.replace(minute=3),
                }
            ],
            start_time=T0,
            end_time=T0.replace(minute=5),
            run_page_url="http://127.0.0.1:8080/#job/1001/run/5001",
        ),
        InsightCreated: InsightCreated(
            tenant_id=TENANT,
            insight_id="ins-1",
            agent_id="retention-agent",
            target_system="adp",
            entity_type="employees",
            entity_id="E-1001",
            changes={"RISK_FLAG": "HIGH", "REVIEW_DATE": "2026-12-01"},
            reason="Overtime up 40% in 3 months",
            confidence=0.82,
            expected_version="7",
        ),
        CostSampled: CostSampled(
            tenant_id=TENANT,
            usage_date=date(2026, 11, 24),
            sku="PREMIUM_JOBS_SERVERLESS_COMPUTE_US_EAST",
            dbus=Decimal("12.500000"),
            dollars=Decimal("4.375"),
            window_start=datetime(2026, 11, 24, tzinfo=UTC),
            window_end=datetime(2026, 11, 25, tzinfo=UTC),
        ),
        ServingLatencySampled: ServingLatencySampled(
            tenant_id=TENANT,
            endpoint_name="retention-agent",
            replica_id="serving-0",
            window_start=T0,
            window_end=T0.replace(second=10),
            count=10,
            sum_ms=1234.5,
            buckets=[0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0],
        ),
        EndpointScaleRequested: EndpointScaleRequested(
            tenant_id=TENANT,
            endpoint_name="retention-agent",
            rule="model_serving_latency",
            reason="p95 812 ms > 500 ms for 5 minutes",
            observed_p95_ms=812.0,
            threshold_ms=500.0,
        ),
        WritebackOutcomeRecorded: WritebackOutcomeRecorded(
            tenant_id=TENANT,
            insight_id="ins-1",
            agent_id="retention-agent",
            target_system="adp",
            entity_type="employees",
            entity_id="E-1001",
            outcome="applied",
            decided_via="slack",
            decided_by="U024BE7LH",
            change_id="chg-acme-000001",
            version=8,
            attempts=1,
            occurred_at=T0.replace(minute=7),
        ),
        DatasourceUpdated: DatasourceUpdated(
            tenant_id=TENANT,
            datasource_id="ds-adp-1",
            entities=["employees", "payroll_runs"],
            schedule={"quartz_cron_expression": "0 0 3 * * ?", "timezone_id": "America/Los_Angeles"},
        ),
        DatasourceRemoved: DatasourceRemoved(tenant_id=TENANT, datasource_id="ds-adp-1", drop_tables=True),
        TenantOffboarded: TenantOffboarded(tenant_id=TENANT, reason="contract ended"),
        ErasureRequested: ErasureRequested(tenant_id=TENANT, employee_id="E00042", requested_by="dpo@acme.example"),
        LineageEmitted: LineageEmitted(
            tenant_id=TENANT,
            event_type="COMPLETE",
            run_id="0d4b7a0e-6c33-5f7e-9a57-1b2f3c4d5e6f",
            job_namespace="https://adb-1234.5.azuredatabricks.net",
            job_name="ap:acme-dental:ingest:ds-adp-1",
            openlineage={
                "eventTime": "2026-11-24T02:05:00+00:00",
                "eventType": "COMPLETE",
                "producer": "https://github.com/agentprovision/apev/tree/main/services/jobs",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "run": {"runId": "0d4b7a0e-6c33-5f7e-9a57-1b2f3c4d5e6f", "facets": {}},
                "job": {
                    "namespace": "https://adb-1234.5.azuredatabricks.net",
                    "name": "ap:acme-dental:ingest:ds-adp-1",
                },
                "inputs": [{"namespace": "mcp://mcp.example", "name": "acme/adp/employees"}],
                "outputs": [
                    {
                        "namespace": "https://adb-1234.5.azuredatabricks.net",
                        "name": "agentprovision_acme_dental.silver.employees",
                    }
                ],
            },
        ),
    }
