"""Checks of a job's `schedule` at create, reset and update (called from `jobs.models.validate_settings`)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apev_contracts.cron import CronError
from apev_workspace.schedules.exceptions import InvalidParameterValue
from apev_workspace.schedules.quartz import QuartzCron

PAUSE_STATUSES = ("PAUSED", "UNPAUSED")


def validate_schedule(settings: dict[str, Any]) -> None:
    """Refuse an invalid schedule with a message naming the field; fill `pause_status` as Databricks does."""
    schedule = settings.get("schedule")
    if schedule is None:
        return
    if not isinstance(schedule, dict):
        raise InvalidParameterValue("schedule must be an object with quartz_cron_expression and timezone_id")
    expression = schedule.get("quartz_cron_expression")
    if not expression:
        raise InvalidParameterValue("Missing required field: schedule.quartz_cron_expression")
    try:
        QuartzCron.parse(expression)
    except (CronError, ValueError) as err:
        raise InvalidParameterValue(f"Invalid schedule.quartz_cron_expression {expression!r}: {err}") from None
    zone = schedule.get("timezone_id")
    if not zone:
        raise InvalidParameterValue("Missing required field: schedule.timezone_id")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterValue(
            f"Invalid schedule.timezone_id {zone!r}: not a known time zone ID (e.g. UTC, Europe/Berlin)"
        ) from None
    schedule.setdefault("pause_status", "UNPAUSED")
    if schedule["pause_status"] not in PAUSE_STATUSES:
        raise InvalidParameterValue(
            f"Invalid schedule.pause_status {schedule['pause_status']!r}: expected PAUSED or UNPAUSED"
        )
