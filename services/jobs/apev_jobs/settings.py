"""Settings of the jobs service: `JOBS_*` environment variables (see apev_runtime.settings)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from apev_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOBS_", extra="ignore", env_nested_delimiter="__")

    service_name: str = "jobs"
    consumer_group: str = "apev-jobs"
