"""The committed JSON Schemas are the contract: this test fails on an incompatible change to a model, and on a
committed schema that is stale (with the command that refreshes it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from apev_contracts.registry import all_specs
from apev_contracts.schemas import DEFAULT_DIR, REGENERATE_COMMAND, compare, generate, main, render, write


def test_committed_schemas_match_the_models() -> None:
    report = compare(DEFAULT_DIR)
    assert report.ok, "\n" + report.describe()


def test_there_is_one_committed_schema_per_registered_type() -> None:
    assert sorted(p.name for p in DEFAULT_DIR.glob("*.json")) == sorted(f"{s.type}.json" for s in all_specs())


def test_schemas_describe_the_whole_kafka_value() -> None:
    schema = generate()["com.agentprovision.cost.sampled.v1.json"]
    assert schema["title"] == "com.agentprovision.cost.sampled.v1"
    assert {"specversion", "id", "type", "time", "tenantid", "correlationid", "data"} <= set(schema["required"])
    dollars = schema["$defs"]["CostSampled"]["properties"]["dollars"]
    assert dollars["type"] == "string"  # money travels as a decimal string, never a JSON float
    assert (schema["properties"]["time"]["type"], schema["properties"]["time"]["format"]) == ("string", "date-time")


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(DEFAULT_DIR, target)
    return target


def edit(path: Path, change: object) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    change(schema)  # type: ignore[operator]
    path.write_text(render(schema), encoding="utf-8")


RUN = "com.agentprovision.run.finished.v1.json"


def test_a_model_that_lost_a_field_is_incompatible_and_write_refuses_it(schema_dir: Path) -> None:
    # The committed (old) schema has a field the current model lacks: the model removed it.
    def old_had_more(schema: dict[str, object]) -> None:
        schema["$defs"]["RunFinished"]["properties"]["legacy_field"] = {"type": "string"}  # type: ignore[index]

    edit(schema_dir / RUN, old_had_more)
    before = (schema_dir / RUN).read_text(encoding="utf-8")
    report = compare(schema_dir)
    assert list(report.incompatible) == [RUN]
    assert "$.data.legacy_field: field removed (or renamed)" in report.describe()
    assert "publish a new major version" in report.describe()
    assert not write(schema_dir).ok
    assert (schema_dir / RUN).read_text(encoding="utf-8") == before  # the record of the old contract stays
    assert main(["--check", "--dir", str(schema_dir)]) == 1


def test_a_stale_schema_names_the_command_and_write_refreshes_it(schema_dir: Path) -> None:
    def new_optional_field_not_yet_in_model(schema: dict[str, object]) -> None:
        schema["$defs"]["RunFinished"]["description"] = "outdated text"  # type: ignore[index]

    edit(schema_dir / RUN, new_optional_field_not_yet_in_model)
    report = compare(schema_dir)
    assert report.stale == [RUN]
    assert f"run `{REGENERATE_COMMAND}`" in report.describe()
    assert main(["--check", "--dir", str(schema_dir)]) == 1
    assert write(schema_dir).ok
    assert compare(schema_dir).ok
    assert main(["--check", "--dir", str(schema_dir)]) == 0


def test_a_model_with_an_added_optional_field_passes_compatibility_but_is_stale(schema_dir: Path) -> None:
    # The committed schema lacks a field the model has: an additive change, accepted once regenerated.
    def old_had_less(schema: dict[str, object]) -> None:
        schema["$defs"]["RunFinished"]["properties"].pop("request_id")  # type: ignore[index]

    edit(schema_dir / RUN, old_had_less)
    report = compare(schema_dir)
    assert report.incompatible == {}
    assert report.stale == [RUN]


def test_missing_and_orphaned_files(schema_dir: Path) -> None:
    (schema_dir / RUN).unlink()
    (schema_dir / "com.agentprovision.job.requested.v0.json").write_text("{}", encoding="utf-8")  # superseded
    (schema_dir / "com.agentprovision.run.started.v1.json").write_text("{}", encoding="utf-8")
    report = compare(schema_dir)
    assert report.missing == [RUN]
    assert report.orphaned == ["com.agentprovision.run.started.v1.json"]
    assert "event type removed without a newer major version" in report.describe()
    assert not write(schema_dir).ok  # the orphan is still reported
    assert (schema_dir / RUN).exists()
