"""The validation real inputs need, on the models directly (the envelope tests cover the same through decode)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from apev_contracts import (
    CostSampled,
    DatasourceCreated,
    InsightCreated,
    JobAction,
    JobRequested,
    JobSpec,
    RunFinished,
    ServingLatencySampled,
    run_outcome,
)
from apev_contracts.events.serving import merge_buckets, quantile_ms
from apev_contracts.examples import TENANT, example_payloads


def dump(model_cls: type[BaseModel]) -> dict[str, Any]:
    return example_payloads()[model_cls].model_dump()


def rejects(model_cls: type[BaseModel], data: dict[str, Any]) -> tuple[str, str]:
    """Validate and return (field path, message) of the first error."""
    with pytest.raises(ValidationError) as info:
        model_cls.model_validate(data)
    error = info.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


def test_the_examples_are_valid() -> None:
    for model_cls, payload in example_payloads().items():
        assert model_cls.model_validate(payload.model_dump()) == payload


# ---------------------------------------------------------------- tenant ids, times, money


@pytest.mark.parametrize("model_cls", list(example_payloads()))
def test_every_model_rejects_a_malformed_tenant_id(model_cls: type[BaseModel]) -> None:
    data = dump(model_cls) | {"tenant_id": "Acme_Dental"}
    field, message = rejects(model_cls, data)
    assert field == "tenant_id"
    assert "is not a tenant id" in message


@pytest.mark.parametrize(
    ("model_cls", "field"),
    [(RunFinished, "start_time"), (CostSampled, "window_start"), (ServingLatencySampled, "window_end")],
)
def test_naive_datetimes_are_rejected(model_cls: type[BaseModel], field: str) -> None:
    data = dump(model_cls) | {field: datetime(2026, 11, 24, 2, 0)}
    assert rejects(model_cls, data) == (
        field,
        "Value error, naive datetime: a timezone is required (e.g. 2026-01-31T02:00:00Z)",
    )
    data = dump(model_cls) | {field: "2026-11-24T02:00:00"}
    assert rejects(model_cls, data)[0] == field


def test_aware_datetimes_are_stored_in_utc() -> None:
    data = dump(RunFinished) | {"start_time": "2026-11-24T03:00:00+01:00", "end_time": "2026-11-24T02:05:00Z"}
    run = RunFinished.model_validate(data)
    assert run.start_time.isoformat() == "2026-11-24T02:00:00+00:00"


@pytest.mark.parametrize("field", ["dollars", "dbus"])
def test_float_money_is_rejected_naming_the_field(field: str) -> None:
    path, message = rejects(CostSampled, dump(CostSampled) | {field: 4.375})
    assert path == field
    assert "float is not accepted" in message


def test_money_from_json_number_is_rejected_but_from_string_accepted() -> None:
    payload = example_payloads()[CostSampled].model_dump_json()
    assert '"dollars":"4.375"' in payload
    with pytest.raises(ValidationError, match="dollars"):
        CostSampled.model_validate_json(payload.replace('"dollars":"4.375"', '"dollars":4.375'))
    assert CostSampled.model_validate_json(payload).dollars == Decimal("4.375")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.1234567", "decimal places"), ("-1", "greater than or equal to 0"), ("NaN", "finite"), ("1" * 25, "digits")],
)
def test_money_limits(value: str, expected: str) -> None:
    path, message = rejects(CostSampled, dump(CostSampled) | {"dollars": value})
    assert path == "dollars"
    assert expected in message


def test_money_keeps_exact_decimals_and_plain_notation() -> None:
    sample = CostSampled.model_validate(dump(CostSampled) | {"dollars": "0.000001", "dbus": Decimal("1E+2")})
    assert sample.dollars == Decimal("0.000001")
    assert '"dbus":"100"' in sample.model_dump_json()
    assert CostSampled.model_validate(dump(CostSampled) | {"dollars": 12}).dollars == Decimal(12)


# ---------------------------------------------------------------- schedules, timezones, sizes


def test_bad_cron_is_rejected_naming_the_field() -> None:
    data = dump(DatasourceCreated)
    data["schedule"] = {"quartz_cron_expression": "0 0 25 * * ?", "timezone_id": "UTC"}
    path, message = rejects(DatasourceCreated, data)
    assert path == "schedule.quartz_cron_expression"
    assert "hour: 25 is outside 0-23" in message


@pytest.mark.parametrize("tz", ["Mars/Olympus", "PST8PDT/../x", "localtime", "", "America/Los Angeles"])
def test_unknown_timezones_are_rejected(tz: str) -> None:
    data = dump(DatasourceCreated)
    data["schedule"] = {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": tz}
    assert rejects(DatasourceCreated, data)[0] == "schedule.timezone_id"


def test_known_timezone_is_accepted() -> None:
    data = dump(DatasourceCreated)
    data["schedule"] = {"quartz_cron_expression": "0 0 2 * * ?", "timezone_id": "Europe/Paris"}
    assert DatasourceCreated.model_validate(data).schedule is not None


@pytest.mark.parametrize(
    ("model_cls", "field", "value"),
    [
        (DatasourceCreated, "name", "x" * 201),
        (DatasourceCreated, "name", ""),
        (DatasourceCreated, "entities", []),
        (DatasourceCreated, "entities", ["Employees"]),
        (DatasourceCreated, "system", "quickbooks"),
        (DatasourceCreated, "config", {"blob": "x" * 20_000}),
        (InsightCreated, "reason", "x" * 4001),
        (InsightCreated, "reason", ""),
        (InsightCreated, "confidence", 1.5),
        (InsightCreated, "changes", {}),
        (InsightCreated, "entity_id", "has space"),
        (RunFinished, "run_id", "r-1"),
        (RunFinished, "run_page_url", "javascript:alert(1)"),
    ],
)
def test_sizes_and_formats_of_fields(model_cls: type[BaseModel], field: str, value: Any) -> None:
    assert rejects(model_cls, dump(model_cls) | {field: value})[0].split(".")[0] == field


def test_duplicate_entities_are_rejected() -> None:
    path, message = rejects(DatasourceCreated, dump(DatasourceCreated) | {"entities": ["payroll", "payroll"]})
    assert path == "entities"
    assert "duplicate" in message


# ---------------------------------------------------------------- jobs


def job(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tasks": tasks}


def py(key: str, *deps: str) -> dict[str, Any]:
    return {"task_key": key, "depends_on": [{"task_key": d} for d in deps], "python_task": {"python_file": "/W/a.py"}}


def test_job_spec_accepts_a_dag() -> None:
    spec = JobSpec.model_validate(job([py("a"), py("b", "a"), py("c", "a", "b")]))
    assert [t.type for t in spec.tasks] == ["python", "python", "python"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([py("a"), py("a")], "duplicate task_key ['a']"),
        ([py("a", "missing")], "depends on unknown task 'missing'"),
        ([py("a", "a")], "depends on itself"),
        ([py("a", "c"), py("b", "a"), py("c", "b")], "form a dependency cycle"),
        ([], "at least 1 item"),
    ],
)
def test_job_spec_rejects_broken_dags(tasks: list[dict[str, Any]], message: str) -> None:
    path, error = rejects(JobSpec, job(tasks))
    assert path == "tasks"
    assert message in error


def test_task_needs_exactly_one_type() -> None:
    both = {"task_key": "a", "python_task": {"python_file": "/W/a.py"}, "notebook_task": {"notebook_path": "/W/n"}}
    path, message = rejects(JobSpec, job([both]))
    assert path == "tasks.0"
    assert "exactly one of python_task, sql_task, notebook_task" in message
    assert rejects(JobSpec, job([{"task_key": "a"}]))[0] == "tasks.0"


def test_task_key_and_paths_are_checked() -> None:
    assert rejects(JobSpec, job([py("bad key")]))[0] == "tasks.0.task_key"
    bad_path = {"task_key": "a", "python_task": {"python_file": "/Workspace/../etc/passwd"}}
    assert rejects(JobSpec, job([bad_path]))[0] == "tasks.0.python_task.python_file"
    relative = {"task_key": "a", "sql_task": {"file": "load.sql"}}
    assert rejects(JobSpec, job([relative]))[0] == "tasks.0.sql_task.file"


def test_job_spec_limits() -> None:
    assert rejects(JobSpec, job([py("a")]) | {"tags": {f"k{i}": "v" for i in range(26)}})[0] == "tags"
    assert rejects(JobSpec, job([py("a")]) | {"max_concurrent_runs": 0})[0] == "max_concurrent_runs"
    assert rejects(JobSpec, job([py("a")]) | {"timeout_seconds": -1})[0] == "timeout_seconds"
    params = [{"name": "p"}, {"name": "p"}]
    assert "duplicate parameter names" in rejects(JobSpec, job([py("a")]) | {"parameters": params})[1]


@pytest.mark.parametrize(
    "action",
    [
        {"type": "run"},
        {"type": "run", "job_parameters": {"date": "2025-10-30"}, "only": ["a"]},
        {"type": "cancel", "run_id": "5001"},
        {"type": "repair", "run_id": "5001", "rerun_all_failed_tasks": True},
        {"type": "repair", "run_id": "5001", "rerun_tasks": ["a"], "latest_repair_id": "7"},
    ],
)
def test_valid_actions(action: dict[str, Any]) -> None:
    assert JobAction.model_validate(action).type == action["type"]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"type": "run", "run_id": "1"}, "action 'run' takes job_parameters and only"),
        ({"type": "cancel"}, "action 'cancel' needs run_id"),
        ({"type": "cancel", "run_id": "1", "job_parameters": {"a": "b"}}, "action 'cancel' takes only run_id"),
        ({"type": "repair", "run_id": "1"}, "exactly one of rerun_tasks and rerun_all_failed_tasks"),
        ({"type": "repair", "run_id": "1", "rerun_tasks": []}, "at least one task"),
        ({"type": "repair", "run_id": "1", "rerun_all_failed_tasks": True, "only": ["a"]}, "not only"),
        ({"type": "delete", "run_id": "1"}, "action 'delete' takes no arguments"),
        ({"type": "restart", "run_id": "1"}, "Input should be 'run', 'cancel', 'repair' or 'delete'"),
    ],
)
def test_invalid_actions(action: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        JobAction.model_validate(action)
    assert message in str(info.value)


def test_job_request_needs_job_or_action_and_names_the_job() -> None:
    data = dump(JobRequested) | {"job": None, "action": None}
    assert "needs `job`, `action` or both" in rejects(JobRequested, data)[1]
    assert example_payloads()[JobRequested].job_name == f"ap:{TENANT}:ingest:ds-adp-1"  # type: ignore[attr-defined]


# ---------------------------------------------------------------- runs, latency


@pytest.mark.parametrize(
    ("life", "result", "outcome"),
    [
        ("TERMINATED", "SUCCESS", "success"),
        ("TERMINATED", "FAILED", "failure"),
        ("INTERNAL_ERROR", "FAILED", "failure"),
        ("TERMINATED", "SUCCESS_WITH_FAILURES", "failure"),
        ("TERMINATED", "TIMEDOUT", "timeout"),
        ("TERMINATED", "CANCELED", "canceled"),
        ("TERMINATED", "UPSTREAM_CANCELED", "canceled"),
        ("SKIPPED", None, "skipped"),
        ("TERMINATED", "MAXIMUM_CONCURRENT_RUNS_REACHED", "skipped"),
        ("INTERNAL_ERROR", None, "failure"),
    ],
)
def test_run_outcome(life: str, result: str | None, outcome: str) -> None:
    assert run_outcome(life, result) == outcome


def test_run_end_before_start_is_rejected() -> None:
    data = dump(RunFinished)
    data["end_time"] = data["start_time"].replace(hour=1)
    assert "end_time is before start_time" in rejects(RunFinished, data)[1]


def test_unknown_databricks_states_are_accepted_but_not_garbage() -> None:
    data = dump(RunFinished)
    data["state"] = {"life_cycle_state": "SOME_NEW_STATE"}
    assert RunFinished.model_validate(data).state.life_cycle_state == "SOME_NEW_STATE"
    data["state"] = {"life_cycle_state": "terminated; drop table"}
    assert rejects(RunFinished, data)[0] == "state.life_cycle_state"


def test_latency_buckets_must_match_the_fixed_bounds_and_count() -> None:
    data = dump(ServingLatencySampled)
    assert rejects(ServingLatencySampled, data | {"buckets": [1] * 11})[0] == "buckets"
    assert "buckets add up to 10, not count=11" in rejects(ServingLatencySampled, data | {"count": 11})[1]
    assert rejects(ServingLatencySampled, data | {"sum_ms": float("nan")})[0] == "sum_ms"


def test_latency_windows_merge_by_adding_buckets() -> None:
    sample = example_payloads()[ServingLatencySampled]
    assert isinstance(sample, ServingLatencySampled)
    merged = merge_buckets(sample, sample)
    assert merged == [0, 2, 4, 6, 8, 0, 0, 0, 0, 0, 0, 0]
    assert sample.quantile_ms(0.5) == 50  # 5th and 6th of 10 invokes are in the (25, 50] bucket
    assert sample.quantile_ms(0.95) == 100
    assert quantile_ms([0] * 12, 0.95) is None
    assert quantile_ms([0] * 11 + [3], 0.5) == float("inf")


# ---------------------------------------------------------------- forward compatibility


def test_unknown_fields_are_kept_so_forwarding_loses_nothing() -> None:
    data = dump(InsightCreated) | {"added_in_1_3": {"x": 1}}
    insight = InsightCreated.model_validate(data)
    assert insight.model_dump()["added_in_1_3"] == {"x": 1}


def test_models_are_immutable() -> None:
    insight = example_payloads()[InsightCreated]
    with pytest.raises(ValidationError):
        insight.reason = "changed"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("model_cls", "field"), [(DatasourceCreated, "config"), (InsightCreated, "changes")])
def test_free_form_json_must_be_finite_and_bounded(model_cls: type[BaseModel], field: str) -> None:
    path, message = rejects(model_cls, dump(model_cls) | {field: {"x": float("inf")}})
    assert path == field
    assert "NaN and Infinity" in message
    path, message = rejects(model_cls, dump(model_cls) | {field: {"x": "y" * 20_000}})
    assert path == field
    assert "more than the 16384 allowed" in message
