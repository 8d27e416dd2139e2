"""Entity schemas: the MCP server's UPPERCASE, all-strings records → lower-case keys and typed values.

The warehouse behind the MCP server speaks Snowflake: ``{"TOTAL_PRODUCTION": "847822.48"}``. Each entity
type names its fields' kinds; money is `Decimal` (never float), counts `int`, days `date`, instants
timezone-aware `datetime` (a naive one is taken as UTC). Fields a schema does not know are kept, lower-cased,
as sent, so an additive change on the server breaks nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from apev_runtime.mcp._errors import McpDataError


class Kind(StrEnum):
    STR = "str"
    INT = "int"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    BOOL = "bool"


S, N, D, DAY, TS = Kind.STR, Kind.INT, Kind.DECIMAL, Kind.DATE, Kind.DATETIME
_COMMON = {"UPDATED_AT": TS, "VERSION": N}

ENTITY_SCHEMAS: dict[str, dict[str, Kind]] = {
    "locations": {
        "LOCATION_ID": S, "PRACTICE_LOCATION": S, "LOCATION_NAME": S, "CITY": S, "STATE": S,
        "OPENED_ON": DAY, "CHAIRS": N, "PROVIDERS": N, **_COMMON,
    },
    "employees": {
        "EMPLOYEE_ID": S, "WORKER_ID": S, "FIRST_NAME": S, "LAST_NAME": S, "PRACTICE_LOCATION": S,
        "JOB_TITLE": S, "DEPARTMENT": S, "EMPLOYMENT_STATUS": S, "HIRE_DATE": DAY, "DATE_OF_BIRTH": DAY,
        "SSN_LAST_FOUR": S, "ANNUAL_SALARY": D, "RISK_FLAG": S, "REVIEW_STATUS": S, "REVIEW_NOTE": S,
        "REVIEW_DATE": DAY, **_COMMON,
    },
    "payroll_runs": {
        "PAYROLL_RUN_ID": S, "PRACTICE_LOCATION": S, "PAY_PERIOD_START": DAY, "PAY_PERIOD_END": DAY,
        "PAY_DATE": DAY, "EMPLOYEE_COUNT": N, "GROSS_PAY": D, "NET_PAY": D, "TAXES_WITHHELD": D, "STATUS": S,
        **_COMMON,
    },
    "production_kpis": {
        "KPI_ID": S, "PRACTICE_LOCATION": S, "KPI_DATE": DAY, "TOTAL_PRODUCTION": D, "TOTAL_COLLECTIONS": D,
        "HYGIENE_PRODUCTION": D, "NEW_PATIENTS": N, "PATIENT_VISITS": N, "CASE_ACCEPTANCE_RATE": D, **_COMMON,
    },
    "financials": {
        "FINANCIAL_ID": S, "PRACTICE_LOCATION": S, "PERIOD_START": DAY, "REVENUE": D, "EXPENSES": D,
        "PAYROLL_EXPENSE": D, "SUPPLIES_EXPENSE": D, "NET_INCOME": D, "REVIEW_STATUS": S, "REVIEW_NOTE": S,
        **_COMMON,
    },
    "journal_entries": {
        "JOURNAL_ENTRY_ID": S, "PRACTICE_LOCATION": S, "ENTRY_DATE": DAY, "ACCOUNT_NUMBER": S,
        "ACCOUNT_NAME": S, "DEBIT": D, "CREDIT": D, "MEMO": S, "REVIEW_STATUS": S, "REVIEW_NOTE": S, **_COMMON,
    },
    "documents": {
        "DOCUMENT_ID": S, "DOC_TYPE": S, "TITLE": S, "PRACTICE_LOCATION": S, "AUTHOR": S, "BODY": S, **_COMMON,
    },
}  # fmt: skip

# The id field of each entity type: what write-back's ``entity_id`` and the data cursor refer to.
ENTITY_ID_FIELDS: dict[str, str] = {name: next(iter(fields)) for name, fields in ENTITY_SCHEMAS.items()}

INTEGRATION_ENTITIES: dict[str, tuple[str, ...]] = {
    "adp": ("employees", "payroll_runs"),
    "netsuite": ("financials", "journal_entries", "documents"),
    "dentalintel": ("production_kpis", "locations"),
    "eaglesoft": ("production_kpis", "locations"),
    "dentrix": ("production_kpis", "locations"),
}


def _to_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(value)


def _to_decimal(value: str) -> Decimal:
    parsed = Decimal(value)
    if not parsed.is_finite():
        raise ValueError(value)
    return parsed


_CONVERTERS: dict[Kind, Callable[[str], Any]] = {
    Kind.STR: str,
    Kind.INT: int,
    Kind.DECIMAL: _to_decimal,
    Kind.DATE: date.fromisoformat,
    Kind.DATETIME: _to_datetime,
    Kind.BOOL: _to_bool,
}


def convert(entity_type: str, field: str, kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind is Kind.STR:
        return value if isinstance(value, str) else str(value)
    if kind is Kind.BOOL and isinstance(value, bool):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise McpDataError(entity_type, field, value, kind.value)
    try:
        return _CONVERTERS[kind](str(value))
    except (ValueError, InvalidOperation, TypeError) as exc:
        raise McpDataError(entity_type, field, value, kind.value) from exc


def normalise(entity_type: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """One record: lower-case keys, values typed per ``ENTITY_SCHEMAS[entity_type]`` (unknown types: keys only)."""
    schema = ENTITY_SCHEMAS.get(entity_type, {})
    out: dict[str, Any] = {}
    for key, value in record.items():
        kind = schema.get(key.upper())
        out[key.lower()] = convert(entity_type, key.upper(), kind, value) if kind is not None else value
    return out
