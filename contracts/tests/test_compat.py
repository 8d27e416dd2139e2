"""`check_compatible` on modified copies of a committed schema, and on real model changes."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from apev_contracts.common import ContractModel
from apev_contracts.compat import check_compatible
from apev_contracts.schemas import DEFAULT_DIR

RUN = "com.agentprovision.run.finished.v1.json"
JOB = "com.agentprovision.job.requested.v1.json"


def committed(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((DEFAULT_DIR / name).read_text(encoding="utf-8"))
    return schema


def changed(name: str, model: str, change: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    old = committed(name)
    new = copy.deepcopy(old)
    change(new["$defs"][model])
    return old, new


def one_problem(old: dict[str, Any], new: dict[str, Any], *expected: str) -> str:
    problems = check_compatible(old, new)
    assert problems, "expected an incompatibility"
    joined = "\n".join(problems)
    for text in expected:
        assert text in joined
    return joined


def test_a_schema_is_compatible_with_itself() -> None:
    for path in DEFAULT_DIR.glob("*.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert check_compatible(schema, copy.deepcopy(schema)) == []


# ---------------------------------------------------------------- each kind of incompatible change


def test_removed_field() -> None:
    old, new = changed(RUN, "RunFinished", lambda m: m["properties"].pop("run_page_url"))
    one_problem(old, new, "$.data.run_page_url: field removed")


def test_renamed_field() -> None:
    def rename(m: dict[str, Any]) -> None:
        m["properties"]["jobid"] = m["properties"].pop("job_id")
        m["required"] = ["jobid" if r == "job_id" else r for r in m["required"]]

    old, new = changed(RUN, "RunFinished", rename)
    one_problem(old, new, "$.data.job_id: field removed (or renamed)", "$.data.jobid: new required field")


def test_changed_type() -> None:
    old, new = changed(RUN, "RunFinished", lambda m: m["properties"]["repair_attempt"].update(type="string"))
    one_problem(old, new, "$.data.repair_attempt: type changed from integer to string")


def test_changed_type_of_a_nested_model_field() -> None:
    old, new = changed(JOB, "TaskSpec", lambda m: m["properties"]["max_retries"].update(type="boolean"))
    one_problem(old, new, "$.data.job.tasks[].max_retries: type changed from integer to boolean")


def test_new_required_field() -> None:
    def add(m: dict[str, Any]) -> None:
        m["properties"]["region"] = {"type": "string"}
        m["required"].append("region")

    old, new = changed(RUN, "RunFinished", add)
    assert check_compatible(old, new) == ["$.data.region: new required field"]


def test_optional_field_became_required() -> None:
    old, new = changed(RUN, "RunFinished", lambda m: m["required"].append("request_id"))
    one_problem(old, new, "$.data.request_id: optional field became required")


def test_narrowed_enum() -> None:
    def narrow(m: dict[str, Any]) -> None:
        m["properties"]["outcome"]["enum"].remove("skipped")

    old, new = changed(RUN, "RunFinished", narrow)
    assert check_compatible(old, new) == ['$.data.outcome: enum narrowed, removed "skipped"']


def test_required_field_became_optional_or_nullable() -> None:
    old, new = changed(RUN, "RunFinished", lambda m: m["required"].remove("job_id"))
    one_problem(old, new, "$.data.job_id: no longer required")

    def nullable(m: dict[str, Any]) -> None:
        m["properties"]["job_id"] = {"anyOf": [m["properties"]["job_id"], {"type": "null"}]}

    old, new = changed(RUN, "RunFinished", nullable)
    one_problem(old, new, "$.data.job_id: may now be null")


def test_no_longer_nullable_and_lost_union_branch() -> None:
    old, new = changed(
        JOB, "JobRequested", lambda m: m["properties"]["job"].update(anyOf=[{"$ref": "#/$defs/JobSpec"}])
    )
    one_problem(old, new, "$.data.job: no longer accepts null")

    def drop_branch(m: dict[str, Any]) -> None:
        m["properties"]["mixed"] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}

    _, with_union = changed(JOB, "JobRequested", drop_branch)
    narrowed = copy.deepcopy(with_union)
    narrowed["$defs"]["JobRequested"]["properties"]["mixed"] = {"anyOf": [{"type": "string"}]}
    one_problem(with_union, narrowed, "$.data.mixed: union alternative type:integer was removed")
    three = copy.deepcopy(with_union)
    three["$defs"]["JobRequested"]["properties"]["mixed"]["anyOf"].append({"type": "boolean"})
    assert check_compatible(with_union, three) == []
    two_of_three = copy.deepcopy(three)
    two_of_three["$defs"]["JobRequested"]["properties"]["mixed"]["anyOf"].pop(0)
    one_problem(three, two_of_three, "$.data.mixed: union alternative type:string was removed")


@pytest.mark.parametrize(
    ("model", "field", "update", "expected"),
    [
        ("RunFinished", "job_name", {"maxLength": 100}, "maxLength tightened from 400 to 100"),
        ("RunFinished", "job_name", {"minLength": 5}, "minLength tightened from 1 to 5"),
        ("RunFinished", "job_id", {"pattern": "^[0-9]{3}$"}, "pattern changed"),
        ("RunFinished", "repair_attempt", {"maximum": 10}, "maximum tightened from none to 10"),
        ("RunFinished", "end_time", {"format": "date"}, "format changed"),
    ],
)
def test_tightened_bounds(model: str, field: str, update: dict[str, Any], expected: str) -> None:
    old, new = changed(RUN, model, lambda m: m["properties"][field].update(update))
    one_problem(old, new, f"$.data.{field}: {expected}")


def test_closed_object_and_key_patterns() -> None:
    old, new = changed(RUN, "RunFinished", lambda m: m.update(additionalProperties=False))
    one_problem(old, new, "$.data: unknown fields are no longer accepted")
    old, new = changed(RUN, "RunFinished", lambda m: m["properties"]["tags"].update(patternProperties={"^x$": {}}))
    one_problem(old, new, "$.data.tags: key pattern")


def test_envelope_changes_are_checked_too() -> None:
    old = committed(RUN)
    new = copy.deepcopy(old)
    new["properties"].pop("correlationid")
    new["required"].remove("correlationid")
    one_problem(old, new, "$.correlationid: field removed")


# ---------------------------------------------------------------- additive changes pass


def test_added_optional_field_is_compatible() -> None:
    def add(m: dict[str, Any]) -> None:
        m["properties"]["region"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}

    old, new = changed(RUN, "RunFinished", add)
    assert check_compatible(old, new) == []


def test_widened_enum_looser_bounds_and_new_docs_are_compatible() -> None:
    def widen(m: dict[str, Any]) -> None:
        m["properties"]["outcome"]["enum"].append("unknown")
        m["properties"]["job_name"]["maxLength"] = 1000
        m["properties"]["job_name"].pop("minLength")
        m["properties"]["job_id"]["description"] = "now documented"
        m["description"] = "changed"

    old, new = changed(RUN, "RunFinished", widen)
    assert check_compatible(old, new) == []


# ---------------------------------------------------------------- on real models


class V1(ContractModel):
    a: str
    b: int | None = None
    kind: Literal["x", "y"]


class V1AddedOptional(ContractModel):
    a: str
    b: int | None = None
    kind: Literal["x", "y", "z"]
    c: list[str] | None = None


class V1ChangedType(ContractModel):
    a: int
    b: int | None = None
    kind: Literal["x", "y"]


class V1NewRequired(ContractModel):
    a: str
    b: int | None = None
    kind: Literal["x", "y"]
    c: str


class V1Narrowed(ContractModel):
    a: str
    b: int | None = None
    kind: Literal["x"]


class V1Removed(ContractModel):
    a: str
    kind: Literal["x", "y"]


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["title"] = "V1"
    return schema


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (V1AddedOptional, []),
        (V1ChangedType, ["$.a: type changed from string to integer"]),
        (V1NewRequired, ["$.c: new required field"]),
        (V1Narrowed, ['$.kind: enum narrowed, removed "y"']),
        (V1Removed, ["$.b: field removed (or renamed)"]),
    ],
)
def test_real_model_changes(model: type[BaseModel], expected: list[str]) -> None:
    assert check_compatible(schema_of(V1), schema_of(model)) == expected
