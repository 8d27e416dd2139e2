"""Tenant settings (ARCHITECTURE §8): one YAML file for every service, reloaded when it changes.

    defaults:                 # what an unknown tenant gets, and what a tenant's own entries override
      daily_dbu_budget: 100
    tenants:
      acme:
        mcp_tenant_code: ACME
        writeback_policy: {default: auto, confidence_threshold: 0.9}

Each service reads the file through its own typed view (a pydantic model that ignores or keeps the keys of
the others): `TenantDirectory(path, MySettings, nested=("writeback_policy",))`. A tenant's entries replace the
defaults' key by key; keys named in `nested` are merged one level deeper. Every tenant is validated when the
file is read, so a broken file is logged and the last good one stays in force (no file: defaults only).
Replace the file atomically (write a new one, rename it over the old) so no reader sees half of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog
import yaml
from pydantic import BaseModel, Field, ValidationError

log = structlog.get_logger("apev.tenants")

M = TypeVar("M", bound=BaseModel)


class TenantsFile(BaseModel):
    defaults: dict[str, Any] = Field(default_factory=dict)
    tenants: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TenantDirectory(Generic[M]):
    """Settings per tenant from the file at `path`, as `model`; re-read when its modification time or size changes."""

    def __init__(self, path: Path, model: type[M], *, nested: Sequence[str] = ()) -> None:
        self.path = path
        self.model = model
        self.nested = tuple(nested)
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._data = TenantsFile()
        self._cache: dict[str, M] = {}

    def get(self, tenant_id: str) -> M:
        data = self._load()
        with self._lock:
            found = self._cache.get(tenant_id)
            if found is None:
                found = self._cache[tenant_id] = self._merge(data, tenant_id)
            return found

    def tenants(self) -> list[str]:
        """The tenants the file names (others get the defaults)."""
        return sorted(self._load().tenants)

    def _load(self) -> TenantsFile:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._data
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                try:
                    data = TenantsFile.model_validate(yaml.safe_load(self.path.read_text()) or {})
                    for tenant in ("", *data.tenants):  # a bad entry keeps the old file, not half of the new one
                        self._merge(data, tenant)
                    self._data, self._cache = data, {}
                    log.info("tenant_settings_loaded", path=str(self.path), tenants=len(data.tenants))
                except (OSError, yaml.YAMLError, ValidationError) as exc:
                    log.warning("tenant_settings_invalid", path=str(self.path), error=str(exc)[:500])
                self._stamp = stamp
            return self._data

    def _merge(self, data: TenantsFile, tenant_id: str) -> M:
        own = data.tenants.get(tenant_id, {})
        merged = {**data.defaults, **own}
        for key in self.nested:
            inner = {**(data.defaults.get(key) or {}), **(own.get(key) or {})}
            if inner:
                merged[key] = inner
        return self.model.model_validate(merged)
