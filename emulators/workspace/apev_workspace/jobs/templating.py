"""Dynamic value references (`{{job.parameters.x}}`, `{{job.run_id}}`, ...) as Databricks substitutes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_REF = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


class UnknownReference(ValueError):
    pass


def context_for(run: dict[str, Any], task: dict[str, Any]) -> dict[str, str]:
    start = datetime.fromtimestamp(run["start_time"] / 1000, tz=UTC)
    repairs = sum(1 for item in run.get("repair_history", []) if item["type"] == "REPAIR")
    values = {
        "job.id": str(run.get("job_id") or ""),
        "job.name": run.get("run_name") or "",
        "job.run_id": str(run["run_id"]),
        "job.repair_count": str(repairs),
        "job.trigger.type": run.get("trigger", "ONE_TIME").lower(),
        "job.start_time.iso_date": start.date().isoformat(),
        "job.start_time.iso_datetime": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "job.start_time.timestamp_ms": str(run["start_time"]),
        "job.start_time.year": str(start.year),
        "job.start_time.month": str(start.month),
        "job.start_time.day": str(start.day),
        "job.start_time.hour": str(start.hour),
        "job.start_time.minute": str(start.minute),
        "job.start_time.second": str(start.second),
        "task.name": task["task_key"],
        "task.run_id": str(task["run_id"]),
        "task.execution_count": str(task.get("attempt_number", 0) + 1),
        # the deprecated spellings, still accepted by Databricks
        "job_id": str(run.get("job_id") or ""),
        "run_id": str(task["run_id"]),
        "parent_run_id": str(run["run_id"]),
        "task_key": task["task_key"],
        "task_retry_count": str(task.get("attempt_number", 0)),
        "start_date": start.date().isoformat(),
        "start_time": str(run["start_time"]),
    }
    for name, value in run.get("params", {}).items():
        values[f"job.parameters.{name}"] = str(value)
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise UnknownReference(f"Invalid dynamic value reference {match.group(0)}: {key} is not defined")
        return values[key]

    return _REF.sub(replace, text)
