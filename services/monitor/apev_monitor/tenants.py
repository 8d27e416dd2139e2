"""Tenant settings (ARCHITECTURE §8): one YAML file, reloaded when it changes; unknown tenants get `defaults`.

    defaults:
      daily_dbu_budget: 100
      freshness_minutes: 1440
    tenants:
      acme:
        daily_dbu_budget: 250
        freshness_minutes: {adp-1: 60}        # per data source, or one number for all

The monitor reads `daily_dbu_budget` and `freshness_minutes`; everything else in the file is kept as given.
A missing file means defaults only; a broken file keeps the last good one (and logs why): loading, reloading
and merging are the runtime's (`apev_runtime.tenants`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from apev_runtime.tenants import TenantDirectory


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    daily_dbu_budget: Decimal | None = None
    freshness_minutes: int | dict[str, int] | None = None

    def freshness_for(self, datasource_id: str, default: int) -> int:
        if isinstance(self.freshness_minutes, int):
            return self.freshness_minutes
        if isinstance(self.freshness_minutes, dict):
            return self.freshness_minutes.get(datasource_id, default)
        return default


Tenants = TenantDirectory[TenantSettings]
"""What the service holds: the shared tenant settings file, read through this service's view."""


def tenant_directory(path: Path) -> Tenants:
    return TenantDirectory(path, TenantSettings)
