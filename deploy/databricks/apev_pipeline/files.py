"""The pipeline's task files as the workspace should hold them, each with its content hash.

Static files (the Python tasks and the gold SQL) are shared by every tenant under `<root>/`; the two SQL
files rendered per data source live under `<root>/tenants/<tenant>/<data source>/`. The ingest service
compares `sha256` with what it uploaded last and uploads only what changed.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from apev_pipeline.entities import GOLD_TABLES

DEFAULT_ROOT = "/Shared/agentprovision/pipeline"
PYTHON_TASKS = ("fetch_from_mcp.py", "silver_to_gold.py", "quality_checks.py")


class TaskFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    """Workspace path (`/Shared/...`); upload as a workspace FILE (format AUTO or RAW), not a notebook."""
    content: str
    language: Literal["PYTHON", "SQL"]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()


def packaged(name: str) -> str:
    return (resources.files("apev_pipeline") / "tasks" / name).read_text(encoding="utf-8")


def static_files(root: str = DEFAULT_ROOT) -> list[TaskFile]:
    """The files every tenant's job shares."""
    files = [TaskFile(path=f"{root}/{name}", content=packaged(name), language="PYTHON") for name in PYTHON_TASKS]
    files += [
        TaskFile(path=f"{root}/gold/{g.file}", content=packaged(f"gold/{g.file}"), language="SQL") for g in GOLD_TABLES
    ]
    return files


def gold_folder(root: str = DEFAULT_ROOT) -> str:
    return f"{root}/gold"
