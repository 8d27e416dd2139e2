from __future__ import annotations

import pytest

from apev_contracts.cron import CronError, validate_quartz_cron

VALID = [
    "0 0 2 * * ?",  # the seed's nightly schedule
    "0 0/5 * * * ?",
    "*/15 * * ? * *",
    "0 15 10 ? * MON-FRI",
    "0 15 10 ? * 6L",
    "0 15 10 ? * FRIL",
    "0 15 10 ? * 6#3",
    "0 15 10 ? * fri#3",
    "0 15 10 L * ?",
    "0 15 10 L-2 * ?",
    "0 15 10 LW * ?",
    "0 15 10 15W * ?",
    "0 0 12 1/5 * ?",
    "0 11 11 11 11 ?",
    "0 0 22-2 ? * *",  # wrapping range
    "0 0 12 ? JAN,MAR,DEC WED",
    "0 0 12 ? jan-jun/2 *",
    "0 0 12 * * ? 2026",
    "0 0 12 * * ? 2026-2030",
    "0 0 12 * * ? *",
    "0 0 12 ? * L",
    "0 10-40/5 8-18 ? * 2-6",
    "0  0   2 * * ?",  # repeated blanks are fine
]


@pytest.mark.parametrize("expression", VALID)
def test_valid_quartz_expressions_pass(expression: str) -> None:
    assert validate_quartz_cron(expression) == expression


INVALID = [
    ("0 0 2 * *", "has 5 fields"),
    ("0 0 2 * * ? 2026 1", "has 8 fields"),
    ("0 0 2 * * *", "exactly one of day-of-month and day-of-week"),  # Quartz refuses both specified
    ("0 0 2 ? * ?", "exactly one of day-of-month and day-of-week"),
    ("60 0 2 * * ?", "second: 60 is outside 0-59"),
    ("0 60 2 * * ?", "minute: 60 is outside 0-59"),
    ("0 0 24 * * ?", "hour: 24 is outside 0-23"),
    ("0 0 2 0 * ?", "day-of-month: 0 is outside 1-31"),
    ("0 0 2 32 * ?", "day-of-month: 32 is outside 1-31"),
    ("0 0 2 * 13 ?", "month: 13 is outside 1-12"),
    ("0 0 2 ? * 8", "day-of-week: 8 is outside 1-7"),
    ("0 0 2 ? * MOX", "day-of-week: 'MOX' is not a number or a name"),
    ("0 0 2 * FOO ?", "month: 'FOO' is not a number or a name"),
    ("0 0 2 * MON ?", "month: 'MON' is not a number or a name"),
    ("? 0 2 * * ?", "second: '?' is only allowed"),
    ("0 0/0 * * * ?", "minute: step 0 is outside 1-59"),
    ("0 0/60 * * * ?", "minute: step 60 is outside 1-59"),
    ("0 /5 * * * ?", "minute: '/5' has nothing before '/'"),
    ("0 1,,2 * * * ?", "minute: empty element"),
    ("0 0 2 ? * 6#6", "day-of-week: occurrence in '6#6' is outside 1-5"),
    ("0 0 2 L-31 * ?", "day-of-month: offset in 'L-31' is outside 1-30"),
    ("0 0 2 32W * ?", "day-of-month: 32 is outside 1-31"),
    ("0 0 2 L,5 * ?", "day-of-month: 'L,5' is not a valid use of L or W"),
    ("0 0 2 ? * 2,L", "day-of-week: '2,L' is not a valid use of L or #"),
    ("0 0 2 * * ? 1969", "year: 1969 is outside 1970-2099"),
    ("0 0 2 * * ? 2030-2026", "year: range '2030-2026' runs backwards"),
    ("0 0 2 * * ? x", "year: 'X' is not a number"),
    ("0 0 two * * ?", "hour: 'TWO' is not a number"),
]


@pytest.mark.parametrize(("expression", "message"), INVALID)
def test_invalid_quartz_expressions_name_the_cron_field(expression: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        validate_quartz_cron(expression)
    assert message in str(info.value)


def test_overlong_expression_is_rejected() -> None:
    with pytest.raises(CronError, match="longer than 200"):
        validate_quartz_cron("0 0 2 * * ? " + "2026," * 50 + "2027")
