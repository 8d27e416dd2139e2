"""Quartz cron expressions evaluated in a time zone, the way Databricks job schedules fire.

Syntax is checked by `apev_contracts.cron.validate_quartz_cron` (its messages name the cron field); this
module turns a valid expression into value sets and finds fire instants. Daylight saving:
- a wall time that does not exist (the spring-forward gap) fires once, shifted forward by the gap, as Java's
  lenient calendar (and so Quartz) resolves it: 02:30 on the day clocks jump 02:00 -> 03:00 fires at 03:30;
- a wall time that happens twice (fall back) fires at its first occurrence only, unless the expression fires
  in every hour (hour field `*`): such interval-style schedules keep firing by elapsed time through both.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apev_contracts.cron import validate_quartz_cron

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_SEARCH_DAYS = 366 * 8  # an expression that matches no day in 8 years never fires (e.g. 30 FEB)


def _number(token: str, names: tuple[str, ...], low: int) -> int:
    return low + names.index(token) if token in names else int(token)


def _values(text: str, low: int, high: int, names: tuple[str, ...] = ()) -> frozenset[int]:
    """`*`, lists, ranges (wrapping ranges allowed, as in Quartz) and steps, as the set of values they select."""
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            start = _number(first, names, low)
            end = _number(last, names, low) if dash else (high if step_text else start)
        span = end - start if end >= start else end + (high - low + 1) - start
        for offset in range(0, span + 1, step):
            value = start + offset
            out.add(value if value <= high else value - (high - low + 1))
    return frozenset(out)


def quartz_weekday(day: date) -> int:
    """Quartz numbers days 1 = SUN .. 7 = SAT; Python's weekday() is 0 = MON .. 6 = SUN."""
    return (day.weekday() + 1) % 7 + 1


@dataclass(frozen=True)
class QuartzCron:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: str
    months: frozenset[int]
    day_of_week: str
    years: frozenset[int] | None

    @classmethod
    def parse(cls, expression: str) -> QuartzCron:
        validate_quartz_cron(expression)  # raises CronError naming the field
        parts = expression.upper().split()
        return cls(
            expression=expression,
            seconds=_values(parts[0], 0, 59),
            minutes=_values(parts[1], 0, 59),
            hours=_values(parts[2], 0, 23),
            day_of_month=parts[3],
            months=_values(parts[4], 1, 12, _MONTHS),
            day_of_week=parts[5],
            years=_values(parts[6], 1970, 2099) if len(parts) == 7 else None,
        )

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    # ------------------------------------------------------------------ days
    def matches_day(self, day: date) -> bool:
        if day.month not in self.months or (self.years is not None and day.year not in self.years):
            return False
        if self.day_of_month != "?":
            return self._dom(day)
        return self._dow(day)

    def _dom(self, day: date) -> bool:
        text = self.day_of_month
        last = calendar.monthrange(day.year, day.month)[1]
        if text == "L":
            return day.day == last
        if text.startswith("L-"):
            return day.day == max(1, last - int(text[2:]))
        if text == "LW":
            return day.day == _nearest_weekday(day, last)
        if text.endswith("W"):
            return day.day == _nearest_weekday(day, min(int(text[:-1]), last))
        return day.day in _values(text, 1, 31)

    def _dow(self, day: date) -> bool:
        text = self.day_of_week
        weekday = quartz_weekday(day)
        last = calendar.monthrange(day.year, day.month)[1]
        if text == "L":
            return weekday == 7
        if text.endswith("L"):
            return weekday == _number(text[:-1], _DAYS, 1) and day.day + 7 > last
        if "#" in text:
            which, nth = text.split("#")
            return weekday == _number(which, _DAYS, 1) and (day.day - 1) // 7 + 1 == int(nth)
        return weekday in _values(text, 1, 7, _DAYS)

    # ------------------------------------------------------------------ wall times
    def next_wall_after(self, wall: datetime) -> datetime | None:
        """The first matching local wall time strictly after `wall` (naive), or None within the search horizon."""
        start = wall.replace(microsecond=0) + timedelta(seconds=1)
        day, floor = start.date(), start.time()
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                found = self._first_time_at_or_after(floor)
                if found is not None:
                    return datetime.combine(day, found)
            day, floor = day + timedelta(days=1), time(0, 0, 0)
            if day.year > 2099:
                return None
        return None

    def _first_time_at_or_after(self, floor: time) -> time | None:
        for hour in sorted(h for h in self.hours if h >= floor.hour):
            min_floor = floor.minute if hour == floor.hour else 0
            for minute in sorted(m for m in self.minutes if m >= min_floor):
                sec_floor = floor.second if (hour, minute) == (floor.hour, floor.minute) else 0
                second = min((s for s in self.seconds if s >= sec_floor), default=None)
                if second is not None:
                    return time(hour, minute, second)
        return None


def _nearest_weekday(day: date, target: int) -> int:
    """Quartz `nW`: the weekday nearest to day `target` of the month, never crossing into another month."""
    candidate = day.replace(day=target)
    weekday = candidate.weekday()  # 5 = Saturday, 6 = Sunday
    last = calendar.monthrange(day.year, day.month)[1]
    if weekday == 5:
        return target - 1 if target > 1 else target + 2
    if weekday == 6:
        return target + 1 if target < last else target - 2
    return target


class Schedule:
    """A Quartz expression in a time zone: fire instants in UTC."""

    def __init__(self, expression: str, timezone_id: str) -> None:
        self.cron = QuartzCron.parse(expression)
        self.zone = ZoneInfo(timezone_id)

    def _instants(self, wall: datetime) -> list[datetime]:
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) != wall:
            return [first]  # in the gap: fold=0 reads it with the offset before the jump, i.e. shifted forward
        if first != second and self.cron.every_hour:
            return [first, second]
        return [first]

    def _offsets(self, around: datetime) -> tuple[timedelta, timedelta]:
        samples = [(around + timedelta(hours=h)).astimezone(self.zone).utcoffset() for h in range(-26, 27)]
        known = [s for s in samples if s is not None]
        return min(known), max(known)

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after `after` (aware)."""
        after = after.astimezone(UTC)
        low, high = self._offsets(after)
        wall = after.replace(tzinfo=None) + low - timedelta(seconds=1)
        best: datetime | None = None
        stop: datetime | None = None
        while True:
            found = self.cron.next_wall_after(wall)
            if found is None or (stop is not None and found > stop):
                return best
            wall = found
            for instant in self._instants(found):
                if instant > after and (best is None or instant < best):
                    best = instant
                    # no later wall can map before `best`: walls map at most `high` behind themselves
                    stop = best.replace(tzinfo=None) + max(high, self._offsets(best)[1])

    def between(self, after: datetime, until: datetime, limit: int = 10_000) -> list[datetime]:
        """Fire instants in (after, until], oldest first."""
        out: list[datetime] = []
        current = self.next_after(after)
        while current is not None and current <= until and len(out) < limit:
            out.append(current)
            current = self.next_after(current)
        return out
