"""The Databricks Asset Bundle (deploy/databricks/bundle) describes the same job and files as the pipeline
builder the ingest service calls: same tasks (keys, order, dependencies, types, timeouts, retries), the same
task files byte for byte, the same job and task parameters; and it is what the generator writes today."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from apev_contracts.common import Schedule
from apev_pipeline import IngestJobInput, build_ingest_job
from apev_pipeline.bundle import write_bundle
from apev_pipeline.files import DEFAULT_ROOT

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "deploy" / "databricks" / "bundle"
# The example the committed bundle was generated for (the command is in deploy/databricks/README.md).
EXAMPLE = IngestJobInput(
    tenant_id="acme",
    datasource_id="ds-adp",
    system="adp",
    entities=["employees", "payroll_runs"],
    schedule=Schedule(quartz_cron_expression="0 0 * * * ?"),
    freshness_minutes=60,
)
UPLOADED = "${workspace.file_path}/pipeline"  # where `databricks bundle deploy` puts ./pipeline


def _bundle_job() -> dict[str, Any]:
    config = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    (job,) = config["resources"]["jobs"].values()
    return job  # type: ignore[no-any-return]


def _as_builder_path(bundle_value: str) -> str:
    """A bundle's local path or uploaded path, named as the builder names it (the default root)."""
    return bundle_value.replace("./pipeline", DEFAULT_ROOT).replace(UPLOADED, DEFAULT_ROOT)


def _files(root: Path) -> list[Path]:
    """The bundle's files; byte-code caches (written when something imports the example's modules) are not."""
    return [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def test_the_committed_bundle_is_what_the_generator_writes(tmp_path: Path) -> None:
    write_bundle(EXAMPLE, tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in _files(tmp_path)}
    committed = {p.relative_to(BUNDLE): p.read_bytes() for p in _files(BUNDLE)}
    assert sorted(fresh) == sorted(committed)
    stale = [str(p) for p in fresh if fresh[p] != committed[p]]
    assert not stale, f"regenerate the bundle (deploy/databricks/README.md): {stale}"


def test_the_bundle_job_is_the_builders() -> None:
    built = build_ingest_job(EXAMPLE)  # exactly what the ingest service would send in job.requested
    job = _bundle_job()
    assert job["name"] == built.name
    assert job["tags"] == built.job.tags
    assert job["max_concurrent_runs"] == built.job.max_concurrent_runs
    assert job["timeout_seconds"] == built.job.timeout_seconds
    assert job["schedule"] == built.job.schedule.model_dump(mode="json")  # type: ignore[union-attr]
    assert job["parameters"] == [{"name": p.name, "default": p.default} for p in built.job.parameters]
    config = yaml.safe_load((BUNDLE / "databricks.yml").read_text())
    assert config["variables"]["run_as"]["default"] == built.job.run_as

    assert [t["task_key"] for t in job["tasks"]] == [t.task_key for t in built.job.tasks]
    for mine, theirs in zip(job["tasks"], built.job.tasks, strict=True):
        key = theirs.task_key
        assert [d["task_key"] for d in mine.get("depends_on", [])] == [d.task_key for d in theirs.depends_on], key
        assert mine.get("timeout_seconds", 0) == theirs.timeout_seconds, key
        assert mine.get("max_retries", 0) == theirs.max_retries, key
        if theirs.python_task is not None:
            python = mine["spark_python_task"]
            assert _as_builder_path(python["python_file"]) == theirs.python_task.python_file, key
            assert [_as_builder_path(p) for p in python["parameters"]] == theirs.python_task.parameters, key
        else:
            assert theirs.sql_task is not None
            sql = mine["sql_task"]
            assert _as_builder_path(sql["file"]["path"]) == theirs.sql_task.file, key
            assert sql["parameters"] == theirs.sql_task.parameters, key
            assert sql["warehouse_id"] == "${var.warehouse_id}"  # the builder leaves it to the jobs service


def test_the_bundle_holds_every_task_file_of_the_builder() -> None:
    built = build_ingest_job(EXAMPLE)
    job = _bundle_job()
    referenced = {
        _as_builder_path(t["spark_python_task"]["python_file"]) for t in job["tasks"] if "spark_python_task" in t
    }
    referenced |= {_as_builder_path(t["sql_task"]["file"]["path"]) for t in job["tasks"] if "sql_task" in t}
    files = {f.path: f.content for f in built.files}
    assert referenced <= set(files)
    for path, content in files.items():
        local = BUNDLE / "pipeline" / path.removeprefix(DEFAULT_ROOT + "/")
        assert local.read_text() == content, f"{local} differs from the builder's {path}"
    on_disk = set(_files(BUNDLE / "pipeline"))
    assert len(on_disk) == len(files)
