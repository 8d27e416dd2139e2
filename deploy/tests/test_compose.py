"""deploy/compose.yaml validates against the Compose Specification's JSON Schema (as vendored by
check-jsonschema, a locked dev dependency) and keeps the promises of the deploy issue."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SERVICES = ("ingest", "jobs", "serving", "writeback", "monitor")


def schema() -> dict[str, Any]:
    text = (resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def validate(doc: dict[str, Any]) -> None:
    spec = schema()
    jsonschema.validators.validator_for(spec)(spec).validate(doc)


def test_compose_validates_against_the_compose_specification() -> None:
    validate(compose())


def test_the_schema_refuses_what_is_wrong() -> None:
    doc = compose()
    doc["services"]["jobs"]["depends_on"]["migrate"]["condition"] = "service_finished"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)
    doc = compose()
    doc["services"]["kafka"]["helthcheck"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_kafka_kraft_postgres_setup_once_services_and_standins_behind_a_profile() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in services
    assert services["postgres"]["image"].startswith("postgres:")
    images = set()
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == [name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        env = svc["environment"]
        assert env[f"{name.upper()}_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env[f"{name.upper()}_DATABASE_SCHEMA"] == name
        assert "profiles" not in svc
        images.add(svc["image"])
    assert services["migrate"]["command"] == ["migrate"] and services["topics"]["command"] == ["topics"]
    for stand_in in ("workspace", "mcp", "sinks"):
        assert services[stand_in]["profiles"] == ["standins"]
        images.add(services[stand_in]["image"])
    images |= {services["migrate"]["image"], services["topics"]["image"]}
    assert len(images) == 1, images  # one image for every role
