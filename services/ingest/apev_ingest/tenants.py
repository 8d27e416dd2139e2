"""Tenant settings (ARCHITECTURE §8): one YAML file, reloaded when it changes; unknown tenants get `defaults`.

    defaults:
      daily_dbu_budget: 100
      freshness_minutes: 1440
    tenants:
      acme:
        mcp_tenant_code: acme
        daily_dbu_budget: 250
        freshness_minutes: {adp-1: 60}        # per data source, or one number for all
        writeback_policy: {auto_apply: true}
        approvers: [U024BE7LH]
        agent_tables: [gold.monthly_kpis]

Only what ingest reads is typed here (`mcp_tenant_code`, `freshness_minutes`); the rest is kept as given.
Loading, reloading and merging are the runtime's (`apev_runtime.tenants`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from apev_runtime.tenants import TenantDirectory

DEFAULT_FRESHNESS_MINUTES = 24 * 60


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    mcp_tenant_code: str | None = None
    daily_dbu_budget: float | None = None
    freshness_minutes: int | dict[str, int] = DEFAULT_FRESHNESS_MINUTES

    def freshness_for(self, datasource_id: str, default: int = DEFAULT_FRESHNESS_MINUTES) -> int:
        if isinstance(self.freshness_minutes, int):
            return self.freshness_minutes
        return self.freshness_minutes.get(datasource_id, default)


Tenants = TenantDirectory[TenantSettings]
"""What the service holds: the shared tenant settings file, read through this service's view."""


def tenant_directory(path: Path) -> Tenants:
    return TenantDirectory(path, TenantSettings)
