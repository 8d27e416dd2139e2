"""Tenant settings (ARCHITECTURE §8): one YAML file, reloaded when it changes; unknown tenants get `defaults`.

    defaults:
      daily_dbu_budget: 100
      freshness_minutes: 1440
    tenants:
      acme:
        daily_dbu_budget: 250
        freshness_minutes: {adp-1: 60}        # per data source, or one number for all

The monitor reads `daily_dbu_budget` and `freshness_minutes`; everything else in the file is kept as given.
A missing file means defaults only; a broken file keeps the last good one (and logs why).
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = structlog.get_logger("apev.monitor.tenants")


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


class TenantsFile(BaseModel):
    defaults: TenantSettings = Field(default_factory=TenantSettings)
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TenantDirectory:
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
