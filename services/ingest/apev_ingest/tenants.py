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
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = structlog.get_logger("apev.ingest.tenants")

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


class TenantsFile(BaseModel):
    defaults: TenantSettings = Field(default_factory=TenantSettings)
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TenantDirectory:
    """Reads the file again when its modification time or size changes; a broken file keeps the last good one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._data = TenantsFile()

    def _load(self) -> TenantsFile:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._data
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._data = TenantsFile.model_validate(yaml.safe_load(self.path.read_text()) or {})
                    log.info("tenant_settings_loaded", path=str(self.path), tenants=len(self._data.tenants))
                except (OSError, yaml.YAMLError, ValidationError) as exc:
                    log.warning("tenant_settings_invalid", path=str(self.path), error=str(exc)[:500])
                self._stamp = stamp
            return self._data

    def get(self, tenant_id: str) -> TenantSettings:
        data = self._load()
        own = data.tenants.get(tenant_id)
        if own is None:
            return data.defaults
        return TenantSettings.model_validate({**data.defaults.model_dump(exclude_unset=True), **own})
