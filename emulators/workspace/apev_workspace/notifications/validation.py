"""Checks of `webhook_notifications` and `health` at job and task level (from `jobs.models.validate_settings`)."""

from __future__ import annotations

from typing import Any

from apev_workspace.notifications.exceptions import InvalidParameterValue

EVENTS = (
    "on_start",
    "on_success",
    "on_failure",
    "on_duration_warning_threshold_exceeded",
    "on_streaming_backlog_exceeded",
)
MAX_PER_EVENT = 3
HEALTH_METRICS = (
    "RUN_DURATION_SECONDS",
    "STREAMING_BACKLOG_BYTES",
    "STREAMING_BACKLOG_RECORDS",
    "STREAMING_BACKLOG_SECONDS",
    "STREAMING_BACKLOG_FILES",
)


def _check_hooks(hooks: Any, where: str) -> None:
    if hooks is None:
        return
    if not isinstance(hooks, dict):
        raise InvalidParameterValue(f"{where} must be an object")
    for event, items in hooks.items():
        if event not in EVENTS:
            raise InvalidParameterValue(f"Unknown field {where}.{event}; expected one of {', '.join(EVENTS)}")
        if not isinstance(items, list):
            raise InvalidParameterValue(f"{where}.{event} must be a list of {{id}} objects")
        if len(items) > MAX_PER_EVENT:
            raise InvalidParameterValue(
                f"{where}.{event} has {len(items)} destinations; at most {MAX_PER_EVENT} are allowed"
            )
        for item in items:
            if not isinstance(item, dict) or not item.get("id"):
                raise InvalidParameterValue(f"Each entry of {where}.{event} needs the id of a notification destination")


def _check_health(health: Any, where: str) -> None:
    if health is None:
        return
    rules = health.get("rules") if isinstance(health, dict) else None
    for rule in rules or []:
        if rule.get("metric") not in HEALTH_METRICS:
            raise InvalidParameterValue(f"{where}.rules: metric must be one of {', '.join(HEALTH_METRICS)}")
        if rule.get("op") != "GREATER_THAN":
            raise InvalidParameterValue(f"{where}.rules: op must be GREATER_THAN")
        if not isinstance(rule.get("value"), int) or rule["value"] < 0:
            raise InvalidParameterValue(f"{where}.rules: value must be a non-negative integer")


def validate_notifications(settings: dict[str, Any]) -> None:
    _check_hooks(settings.get("webhook_notifications"), "webhook_notifications")
    _check_health(settings.get("health"), "health")
    for task in settings.get("tasks") or []:
        key = task.get("task_key")
        _check_hooks(task.get("webhook_notifications"), f"tasks[{key}].webhook_notifications")
        _check_health(task.get("health"), f"tasks[{key}].health")
