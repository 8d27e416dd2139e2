"""Quartz schedules: evaluation across daylight saving, validation, and runs started on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service import jobs

from apev_workspace.schedules.clock import ManualClock
from apev_workspace.schedules.quartz import Schedule
from apev_workspace.testing import RunningWorkspace, py_task, upload

NEW_YORK = ZoneInfo("America/New_York")
SPRING = datetime(2026, 3, 8, 6, 57, tzinfo=UTC)  # 01:57 EST; at 07:00Z (02:00 EST) clocks jump to 03:00 EDT
FALL = datetime(2026, 11, 1, 5, 57, tzinfo=UTC)  # 01:57 EDT; at 06:00Z (02:00 EDT) clocks fall back to 01:00 EST


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------------- evaluation, no server
def test_every_minute_fires_every_real_minute_across_both_changes() -> None:
    every_minute = Schedule("0 * * * * ?", "America/New_York")
    for start in (SPRING, FALL):
        fires = every_minute.between(start - timedelta(hours=1), start + timedelta(hours=2))
        assert fires == [start - timedelta(hours=1) + timedelta(minutes=i) for i in range(1, 181)]
    walls = [f.astimezone(NEW_YORK).strftime("%H:%M") for f in every_minute.between(SPRING, _utc(2026, 3, 8, 7, 2))]
    assert walls == ["01:58", "01:59", "03:00", "03:01", "03:02"]


def test_fixed_times_in_the_gap_shift_forward_and_in_the_overlap_fire_once() -> None:
    daily_0230 = Schedule("0 30 2 * * ?", "America/New_York")
    assert daily_0230.between(_utc(2026, 3, 7), _utc(2026, 3, 10)) == [
        _utc(2026, 3, 7, 7, 30),  # 02:30 EST
        _utc(2026, 3, 8, 7, 30),  # 02:30 does not exist: 03:30 EDT
        _utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    daily_0130 = Schedule("0 30 1 * * ?", "America/New_York")
    assert daily_0130.between(_utc(2026, 10, 31, 12), _utc(2026, 11, 2, 12)) == [
        _utc(2026, 11, 1, 5, 30),  # the first 01:30 (EDT) only
        _utc(2026, 11, 2, 6, 30),
    ]
    hourly = Schedule("0 30 * * * ?", "America/New_York")  # interval-style: by elapsed time through the overlap
    assert [f.hour for f in hourly.between(_utc(2026, 11, 1, 4), _utc(2026, 11, 1, 8))] == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 0 9 ? * MON-FRI", _utc(2026, 11, 27, 10), _utc(2026, 11, 30, 9)),  # Friday 10:00 -> Monday
        ("0 0/15 * * * ?", _utc(2026, 1, 1, 0, 7), _utc(2026, 1, 1, 0, 15)),
        ("0 0 0 L * ?", _utc(2026, 2, 3), _utc(2026, 2, 28)),
        ("0 0 6 ? * 6#3", _utc(2026, 1, 1), _utc(2026, 1, 16, 6)),  # third Friday
        ("0 0 6 LW * ?", _utc(2026, 1, 1), _utc(2026, 1, 30, 6)),  # Jan 31 2026 is a Saturday
        ("0 0 12 15W * ?", _utc(2026, 8, 1), _utc(2026, 8, 14, 12)),  # Aug 15 2026 is a Saturday
        ("0 0 12 1 JAN ? 2030", _utc(2026, 1, 1), _utc(2030, 1, 1, 12)),
        ("0 0 0 30 FEB ?", _utc(2026, 1, 1), None),
    ],
)
def test_quartz_syntax(expression: str, after: datetime, expected: datetime | None) -> None:
    assert Schedule(expression, "UTC").next_after(after) == expected


# ---------------------------------------------------------------------- the workspace
def _job(w: WorkspaceClient, name: str, expression: str, pause: jobs.PauseStatus | None = None) -> int:
    path = upload(w, "/Shared/sched/noop.py", "pass")
    schedule = jobs.CronSchedule(quartz_cron_expression=expression, timezone_id="America/New_York", pause_status=pause)
    return w.jobs.create(name=name, tasks=[py_task("t", path)], schedule=schedule, max_concurrent_runs=10).job_id


def test_schedule_fires_on_the_injected_clock_across_dst(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    clock = ManualClock(SPRING)
    scheduler = ws.workspace.schedules
    scheduler.use_clock(clock)
    job_id = _job(w, "every-minute", "0 * * * * ?")
    paused_id = _job(w, "paused", "0 * * * * ?", jobs.PauseStatus.PAUSED)
    assert w.jobs.get(job_id).settings.schedule.pause_status == jobs.PauseStatus.UNPAUSED
    assert scheduler.tick() == []  # schedules count from the first tick that sees them

    fired = []
    for _ in range(10):
        clock.advance(30)
        fired += scheduler.tick()
    assert {f.job_id for f in fired} == {job_id}
    walls = [f.scheduled.astimezone(NEW_YORK).strftime("%H:%M %Z") for f in fired]
    assert walls == ["01:58 EST", "01:59 EST", "03:00 EDT", "03:01 EDT", "03:02 EDT"]
    assert [f.scheduled for f in fired] == [SPRING + timedelta(minutes=i) for i in range(1, 6)]

    runs = list(w.jobs.list_runs(job_id=job_id))
    assert sorted(r.run_id for r in runs) == sorted(f.run_id for f in fired)
    assert {r.trigger for r in runs} == {jobs.TriggerType.PERIODIC}
    assert list(w.jobs.list_runs(job_id=paused_id)) == []

    # Unpausing starts from now: the paused minutes are not caught up.
    w.jobs.update(
        paused_id,
        new_settings=jobs.JobSettings(
            schedule=jobs.CronSchedule(
                quartz_cron_expression="0 * * * * ?",
                timezone_id="America/New_York",
                pause_status=jobs.PauseStatus.UNPAUSED,
            )
        ),
    )
    scheduler.tick()
    clock.advance(60)
    assert [(f.job_id, f.scheduled) for f in scheduler.tick()] == [
        (job_id, SPRING + timedelta(minutes=6)),
        (paused_id, SPRING + timedelta(minutes=6)),
    ]


def test_missed_instants_collapse_into_one_catch_up_run(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    clock = ManualClock(_utc(2026, 6, 1, 12))
    ws.workspace.schedules.use_clock(clock)
    job_id = _job(w, "catch-up", "0 * * * * ?")
    ws.workspace.schedules.tick()
    clock.advance(10 * 60 + 30)  # ten instants; the last one is on time
    fired = ws.workspace.schedules.tick()
    assert [(f.scheduled.minute, f.catch_up) for f in fired] == [(1, True), (10, False)]
    assert len(list(w.jobs.list_runs(job_id=job_id))) == 2


def test_seconds_schedules_keep_the_ten_second_floor(w: WorkspaceClient, ws: RunningWorkspace) -> None:
    clock = ManualClock(_utc(2026, 6, 1, 12))
    ws.workspace.schedules.use_clock(clock)
    _job(w, "every-second", "* * * * * ?")
    ws.workspace.schedules.tick()
    fired = []
    for _ in range(30):
        clock.advance(1)
        fired += ws.workspace.schedules.tick()
    assert [f.scheduled.second for f in fired] == [1, 11, 21]


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"quartz_cron_expression": "0 * * * *", "timezone_id": "UTC"}, "schedule.quartz_cron_expression"),
        ({"quartz_cron_expression": "0 0 25 * * ?", "timezone_id": "UTC"}, "schedule.quartz_cron_expression"),
        ({"quartz_cron_expression": "0 0 1 * * *", "timezone_id": "UTC"}, "schedule.quartz_cron_expression"),
        ({"quartz_cron_expression": "0 0 1 * * ?", "timezone_id": "Mars/Olympus"}, "schedule.timezone_id"),
        ({"quartz_cron_expression": "0 0 1 * * ?"}, "schedule.timezone_id"),
        ({"quartz_cron_expression": "0 0 1 * * ?", "timezone_id": "UTC", "pause_status": "NO"}, "pause_status"),
    ],
)
def test_invalid_schedules_are_refused_at_create_and_reset(
    w: WorkspaceClient, schedule: dict[str, str], field: str
) -> None:
    path = upload(w, "/Shared/sched/noop.py", "pass")
    task = py_task("t", path).as_dict()
    with pytest.raises(InvalidParameterValue, match=field):
        w.api_client.do("POST", "/api/2.2/jobs/create", body={"name": "bad", "tasks": [task], "schedule": schedule})
    job_id = w.jobs.create(name="good", tasks=[py_task("t", path)]).job_id
    with pytest.raises(InvalidParameterValue, match=field):
        w.api_client.do(
            "POST",
            "/api/2.2/jobs/reset",
            body={"job_id": job_id, "new_settings": {"name": "good", "tasks": [task], "schedule": schedule}},
        )
