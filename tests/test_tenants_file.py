"""The shipped tenant settings file is valid for every service that reads it (each through its own view)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from apev_ingest.tenants import tenant_directory as ingest_tenants
from apev_monitor.tenants import tenant_directory as monitor_tenants
from apev_writeback.tenants import tenant_directory as writeback_tenants

FILE = Path(__file__).resolve().parents[1] / "deploy" / "tenants.yaml"


def test_every_service_reads_the_shipped_tenants_file() -> None:
    ingest, monitor, writeback = ingest_tenants(FILE), monitor_tenants(FILE), writeback_tenants(FILE)
    # A file a service cannot read would be logged and ignored (defaults only): check the values came through.
    assert ingest.get("acme").mcp_tenant_code == "acme" and ingest.get("acme").freshness_for("any") == 60
    assert monitor.get("acme").daily_dbu_budget == Decimal(250) and monitor.get("other").daily_dbu_budget == 100
    policy = writeback.get("acme").writeback_policy
    assert policy.confidence_threshold == 0.9 and policy.targets["adp/employees"] == "hold"
    assert policy.default == "auto"  # from the defaults, merged one level deep
    assert writeback.get("acme").approvers == ["U0ACMEOPS"]
