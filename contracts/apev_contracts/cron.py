"""A small validator for Quartz cron expressions, the syntax of Databricks job schedules.

Fields: second minute hour day-of-month month day-of-week [year]. Quartz rules kept here:
- `?` ("no specific value") in exactly one of day-of-month and day-of-week (Quartz refuses both or neither);
- `*`, lists `a,b`, ranges `a-b` (wrapping ranges such as `22-2` allowed, as Quartz does), steps `a/n`,
  `*/n` and `a-b/n`;
- month names JAN-DEC and day names SUN-SAT (1 = SUN), case-insensitive;
- day-of-month: `L`, `L-n`, `LW`, `nW`; day-of-week: `L`, `nL`, `n#k` (k 1-5); each alone in its field;
- year (optional) 1970-2099.
Only syntax and ranges are checked; whether the expression ever fires (e.g. `0 0 0 31 FEB ?`) is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_CRON_LENGTH: Final = 200


class CronError(ValueError):
    """A Quartz cron expression that is not valid; the message names the cron field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    max_step: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: Final = (
    _Field("second", 0, 59, 59),
    _Field("minute", 0, 59, 59),
    _Field("hour", 0, 23, 23),
    _Field("day-of-month", 1, 31, 31),
    _Field("month", 1, 12, 12, _MONTHS),
    _Field("day-of-week", 1, 7, 7, _DAYS),
    _Field("year", 1970, 2099, 129),
)
_DOM, _DOW = _FIELDS[3], _FIELDS[5]
_NUMBER = re.compile(r"^[0-9]{1,4}$")


def _value(token: str, field: _Field) -> int:
    if token in field.names:
        return field.low + field.names.index(token)
    if not _NUMBER.fullmatch(token):
        raise CronError(f"{field.name}: {token!r} is not a number{' or a name' if field.names else ''}")
    number = int(token)
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _step(token: str, field: _Field) -> None:
    if not _NUMBER.fullmatch(token):
        raise CronError(f"{field.name}: step {token!r} is not a number")
    if not 1 <= int(token) <= field.max_step:
        raise CronError(f"{field.name}: step {token} is outside 1-{field.max_step}")


def _item(item: str, field: _Field) -> None:
    """One element of a list: `*`, `a`, `a-b`, each optionally followed by `/step`."""
    base, slash, step = item.partition("/")
    if slash:
        _step(step, field)
    if base == "*":
        return
    if base == "":
        raise CronError(f"{field.name}: {item!r} has nothing before '/'")
    start, dash, end = base.partition("-")
    _value(start, field)
    if dash:
        end_value = _value(end, field)
        if field.name == "year" and end_value < _value(start, field):
            raise CronError(f"{field.name}: range {base!r} runs backwards")


def _special_day_of_month(text: str) -> bool:
    """`L`, `L-n`, `LW`, `nW`: True when `text` is one (validated), False when it uses none of L/W."""
    if "L" not in text and "W" not in text:
        return False
    if text in ("L", "LW"):
        return True
    if match := re.fullmatch(r"L-([0-9]{1,2})", text):
        if not 1 <= int(match.group(1)) <= 30:
            raise CronError(f"day-of-month: offset in {text!r} is outside 1-30")
        return True
    if match := re.fullmatch(r"([0-9]{1,2})W", text):
        _value(match.group(1), _DOM)
        return True
    raise CronError(f"day-of-month: {text!r} is not a valid use of L or W (L, L-n, LW or nW, alone in the field)")


def _special_day_of_week(text: str) -> bool:
    """`L`, `nL`, `n#k`: True when `text` is one (validated), False when it uses neither L nor #."""
    if "L" not in text and "#" not in text:
        return False
    if text == "L":
        return True
    if match := re.fullmatch(r"([0-9A-Z]{1,3})L", text):
        _value(match.group(1), _DOW)
        return True
    if match := re.fullmatch(r"([0-9A-Z]{1,3})#([0-9]{1,2})", text):
        _value(match.group(1), _DOW)
        if not 1 <= int(match.group(2)) <= 5:
            raise CronError(f"day-of-week: occurrence in {text!r} is outside 1-5")
        return True
    raise CronError(f"day-of-week: {text!r} is not a valid use of L or # (L, nL or n#k, alone in the field)")


def _check_field(text: str, field: _Field) -> None:
    if text == "?":
        if field not in (_DOM, _DOW):
            raise CronError(f"{field.name}: '?' is only allowed in day-of-month or day-of-week")
        return
    if field is _DOM and _special_day_of_month(text):
        return
    if field is _DOW and _special_day_of_week(text):
        return
    for item in text.split(","):
        if item == "":
            raise CronError(f"{field.name}: empty element in list {text!r}")
        _item(item, field)


def validate_quartz_cron(expression: str) -> str:
    """Return `expression` unchanged when it is a valid Quartz cron expression, else raise `CronError`."""
    if not isinstance(expression, str):
        raise CronError(f"expected a string, got {type(expression).__name__}")
    if len(expression) > MAX_CRON_LENGTH:
        raise CronError(f"longer than {MAX_CRON_LENGTH} characters")
    parts = expression.upper().split()
    if len(parts) not in (6, 7):
        raise CronError(
            f"{expression!r} has {len(parts)} fields; Quartz needs 6 or 7 "
            "(second minute hour day-of-month month day-of-week [year])"
        )
    for text, field in zip(parts, _FIELDS, strict=False):
        _check_field(text, field)
    if (parts[3] == "?") == (parts[5] == "?"):
        raise CronError("'?' must be used in exactly one of day-of-month and day-of-week")
    return expression
