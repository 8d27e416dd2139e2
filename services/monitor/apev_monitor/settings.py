"""Settings of the monitor service: `MONITOR_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "monitor"
    consumer_group: str = "apev-monitor"
