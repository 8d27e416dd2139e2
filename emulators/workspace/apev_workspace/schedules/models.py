"""The scheduler: starts runs of jobs whose `schedule` fires, on the workspace's clock.

`tick(now)` starts one run (trigger PERIODIC) per fire instant in (last tick, now]. As Quartz does with its
default misfire policy, instants older than `misfire_seconds` (the workspace was down, or a test jumped the
clock) collapse into one catch-up run. Databricks' floor of 10 s between two scheduled runs of a job holds.
A background thread ticks every second on the system clock; with a manual clock (`use_clock`), tests drive
`tick()` themselves so that nothing fires behind their back.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apev_workspace.core.exceptions import ApiError
from apev_workspace.schedules.clock import Clock, SystemClock
from apev_workspace.schedules.quartz import Schedule

if TYPE_CHECKING:
    from apev_workspace.core.store import Store
    from apev_workspace.jobs.models import Jobs

log = logging.getLogger("apev_workspace.schedules")
MIN_INTERVAL = timedelta(seconds=10)


@dataclass(frozen=True)
class Fire:
    job_id: int
    scheduled: datetime  # the instant the schedule fired for
    run_id: int
    catch_up: bool = False


class Scheduler:
    def __init__(
        self,
        store: Store,
        lock: threading.RLock,
        jobs: Jobs,
        clock: Clock | None = None,
        *,
        misfire_seconds: float = 60,
        tick_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._lock = lock
        self.jobs = jobs
        self.clock: Clock = clock or SystemClock()
        self.background = isinstance(self.clock, SystemClock)
        self.misfire = timedelta(seconds=misfire_seconds)
        self.tick_seconds = tick_seconds
        # job id -> {"sig": [expr, tz, pause], "last": iso instant evaluated up to, "fired": iso of the last fire}
        self.state: dict[int, dict[str, Any]] = {int(k): v for k, v in store.load("schedule_state").items()}
        self.history: deque[Fire] = deque(maxlen=1000)
        self._schedules: dict[tuple[str, str], Schedule] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ clock and thread
    def use_clock(self, clock: Clock, *, background: bool | None = None) -> None:
        """Evaluate on `clock` from now on; every schedule starts counting afresh from its current time."""
        with self._lock:
            self.clock = clock
            self.background = isinstance(clock, SystemClock) if background is None else background
            self.state.clear()
            self.history.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="apev-workspace-scheduler", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            if self.background:
                try:
                    self.tick()
                except Exception:  # a bad tick must not end scheduling for every job
                    log.exception("scheduler tick failed")

    # ------------------------------------------------------------------ evaluation
    def _schedule(self, expression: str, zone: str) -> Schedule:
        key = (expression, zone)
        if key not in self._schedules:
            self._schedules[key] = Schedule(expression, zone)
        return self._schedules[key]

    def tick(self, now: datetime | None = None) -> list[Fire]:
        """Start the runs due by `now` (default: the clock's time); returns what fired."""
        with self._lock:
            now = (now or self.clock.now()).astimezone(UTC)
            fired: list[Fire] = []
            for job_id in list(self.state):
                if job_id not in self.jobs.jobs or not self.jobs.jobs[job_id]["settings"].get("schedule"):
                    self.state.pop(job_id)
                    self._store.delete("schedule_state", job_id)
            for job_id, job in list(self.jobs.jobs.items()):
                spec = job["settings"].get("schedule")
                if spec:
                    fired.extend(self._evaluate(job_id, spec, now))
            return fired

    def _evaluate(self, job_id: int, spec: dict[str, Any], now: datetime) -> list[Fire]:
        sig = [spec["quartz_cron_expression"], spec["timezone_id"], spec.get("pause_status", "UNPAUSED")]
        state = self.state.get(job_id)
        if state is None or state["sig"] != sig:
            state = {"sig": sig, "last": now.isoformat(), "fired": None}
            self.state[job_id] = state
            self._store.put("schedule_state", job_id, state)
            return []
        last = datetime.fromisoformat(state["last"])
        if sig[2] == "PAUSED" or now <= last:
            state["last"] = max(last, now).isoformat()
            return []
        schedule = self._schedule(sig[0], sig[1])
        due: list[tuple[datetime, bool]] = []
        on_time_from = max(last, now - self.misfire)
        if on_time_from > last:
            missed = schedule.next_after(last)
            if missed is not None and missed <= on_time_from:
                due.append((missed, True))  # Quartz's smart misfire policy: fire once now for all missed
        due.extend((instant, False) for instant in schedule.between(on_time_from, now))
        state["last"] = now.isoformat()
        fires = []
        for instant, catch_up in due:
            previous = datetime.fromisoformat(state["fired"]) if state["fired"] else None
            if previous is not None and instant - previous < MIN_INTERVAL:
                continue
            run_id = self._start_run(job_id)
            if run_id is None:
                continue
            state["fired"] = instant.isoformat()
            fire = Fire(job_id, instant, run_id, catch_up)
            self.history.append(fire)
            fires.append(fire)
        if fires:
            self._store.put("schedule_state", job_id, state)
        return fires

    def _start_run(self, job_id: int) -> int | None:
        job = self.jobs.jobs[job_id]
        try:
            owner = self.jobs.identity.principal_for(job["creator_kind"], job["creator_id"])
            run = self.jobs.run_now({"job_id": job_id}, owner)
        except (ApiError, KeyError) as err:  # KeyError: the job's owner was deleted
            log.warning("scheduled run of job %s not started: %s", job_id, err)
            return None
        run["trigger"] = "PERIODIC"  # still under the lock: the executor has not seen the run yet
        self.jobs.save_run(run)
        return int(run["run_id"])

    def next_fire(self, job_id: int) -> datetime | None:
        """When the job's schedule fires next after the clock's current time (None when paused or absent)."""
        with self._lock:
            job = self.jobs.jobs.get(job_id)
            spec = (job or {}).get("settings", {}).get("schedule")
            if not spec or spec.get("pause_status") == "PAUSED":
                return None
            return self._schedule(spec["quartz_cron_expression"], spec["timezone_id"]).next_after(self.clock.now())
