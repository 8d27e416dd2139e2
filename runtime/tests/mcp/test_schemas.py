from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apev_runtime.mcp import ENTITY_ID_FIELDS, ENTITY_SCHEMAS, INTEGRATION_ENTITIES, McpDataError, normalise


def test_snowflake_record_becomes_typed() -> None:
    raw = {
        "KPI_ID": "KPI-1",
        "PRACTICE_LOCATION": "eastlake_001",
        "KPI_DATE": "2025-12-30",
        "TOTAL_PRODUCTION": "847822.48",
        "NEW_PATIENTS": "3",
        "UPDATED_AT": "2025-12-31T02:00:00Z",
        "VERSION": "1",
        "SOMETHING_NEW": "kept",
    }
    record = normalise("production_kpis", raw)
    assert record == {
        "kpi_id": "KPI-1",
        "practice_location": "eastlake_001",
        "kpi_date": date(2025, 12, 30),
        "total_production": Decimal("847822.48"),
        "new_patients": 3,
        "updated_at": datetime(2025, 12, 31, 2, tzinfo=UTC),
        "version": 1,
        "something_new": "kept",
    }


def test_nulls_stay_null_and_naive_times_are_utc() -> None:
    record = normalise("employees", {"ANNUAL_SALARY": None, "UPDATED_AT": "2025-01-01T00:00:00"})
    assert record["annual_salary"] is None
    assert record["updated_at"].tzinfo is UTC


@pytest.mark.parametrize(
    ("field", "value"),
    [("TOTAL_PRODUCTION", "12,5"), ("TOTAL_PRODUCTION", 1.5), ("TOTAL_PRODUCTION", "NaN"), ("NEW_PATIENTS", "x")],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(McpDataError) as err:
        normalise("production_kpis", {field: value})
    assert err.value.field == field
    assert field in str(err.value)


def test_unknown_entity_types_only_lower_case_keys() -> None:
    assert normalise("brand_new", {"A_B": "1"}) == {"a_b": "1"}


def test_schema_tables_agree() -> None:
    assert set(ENTITY_ID_FIELDS) == set(ENTITY_SCHEMAS)
    assert {e for entities in INTEGRATION_ENTITIES.values() for e in entities} == set(ENTITY_SCHEMAS)
