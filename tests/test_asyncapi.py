"""The committed AsyncAPI documents (docs/asyncapi/) are what the generator makes of the five apps, are valid
AsyncAPI 3.0, carry payload schemas that accept the contracts' example events, and are served by a service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema
from jsonschema import Draft202012Validator

from apev_contracts.envelope import new_event
from apev_contracts.examples import example_payloads
from apev_contracts.registry import spec_for_model
from apev_runtime import asyncapi
from apev_stack.asyncapi import DEFAULT_DIR, SERVICES

# What each service's handlers.py registers (tests/test_service_skeletons.py lists the same topics).
SUBSCRIBED = {
    "ingest": {
        "datasource.created",
        "run.finished",
        "datasource.updated",
        "datasource.removed",
        "tenant.offboarded",
        "erasure.requested",
    },
    "jobs": {"job.requested", "tenant.offboarded"},
    "serving": {"run.finished", "endpoint.scale.requested", "tenant.offboarded"},
    "writeback": {"insight.created", "datasource.created", "erasure.requested"},
    "monitor": {"run.finished", "cost.sampled", "serving.latency.sampled", "tenant.offboarded", "lineage.emitted"},
}


def _committed(service: str) -> dict[str, Any]:
    return json.loads((DEFAULT_DIR / f"{service}.json").read_text(encoding="utf-8"))


def test_committed_documents_match_the_generator() -> None:
    """Drift check: the generator (building each app with create_app) in its own process, as `make asyncapi`."""
    proc = subprocess.run(
        [sys.executable, "-m", "apev_stack.asyncapi", "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_reports_a_stale_document(tmp_path: Path) -> None:
    for service in SERVICES:
        (tmp_path / f"{service}.json").write_text((DEFAULT_DIR / f"{service}.json").read_text())
    doc = _committed("jobs")
    doc["info"]["version"] = "9.9.9"
    (tmp_path / "jobs.json").write_text(asyncapi.render(doc))
    (tmp_path / "gone.json").write_text("{}")
    generated = {f"{s}.json": _committed(s) for s in SERVICES}
    from apev_stack.asyncapi import compare

    assert compare(tmp_path, generated) == ["jobs.json", "gone.json"]


@pytest.mark.parametrize("service", SERVICES)
def test_document_is_valid_asyncapi_3(service: str) -> None:
    doc = _committed(service)
    assert asyncapi.problems(doc) == []
    # FastStream's AsyncAPI 3.0 model (offline) as a second opinion; it requires a server `pathname`, which
    # the specification makes optional, so its copy gets one.
    servers = {k: {"pathname": "", **v} for k, v in doc["servers"].items()}
    ApplicationSchema.model_validate(doc | {"servers": servers})
    received = {
        doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    assert received == SUBSCRIBED[service]
    for op in doc["operations"].values():
        if op["action"] == "receive":
            assert op["bindings"]["kafka"]["groupId"]["const"].startswith(f"apev-{service}")


@pytest.mark.parametrize("service", SERVICES)
def test_payload_schemas_accept_the_contract_examples(service: str) -> None:
    doc = _committed(service)
    for name, message in doc["components"]["messages"].items():
        model = next(m for m in example_payloads() if spec_for_model(m).type == name)
        event = new_event(example_payloads()[model], tenant_id="acme-dental", source="/test")
        schema = {"$ref": message["payload"]["$ref"], "components": doc["components"]}
        Draft202012Validator.check_schema(schema)
        Draft202012Validator(schema).validate(json.loads(event.model_dump_json()))
        without_data = {k: v for k, v in json.loads(event.model_dump_json()).items() if k != "data"}
        assert not Draft202012Validator(schema).is_valid(without_data)


def test_problems_are_reported() -> None:
    doc = _committed("writeback")
    doc["asyncapi"] = "2.6.0"
    del doc["info"]["version"]
    doc["operations"]["on_insight_created"]["action"] = "subscribe"
    doc["operations"]["on_insight_created"]["messages"] = [{"$ref": "#/channels/writeback_outcome/messages/X"}]
    found = asyncapi.problems(doc)
    assert any("3.0.0" in p for p in found)
    assert "info.version is required" in found
    assert "operations.on_insight_created.action must be send or receive" in found
    assert any("does not resolve" in p for p in found)
    assert any("is not one of its channel's" in p for p in found)


async def test_service_serves_its_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor's app, in process (no lifespan: nothing starts), answers GET /asyncapi.json."""
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path))
    from apev_monitor.app import create_app
    from apev_monitor.settings import Settings

    app = create_app(Settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://monitor") as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    assert asyncapi.problems(served) == []
    committed = _committed("monitor")
    assert served["operations"] == committed["operations"]
    assert served["channels"] == committed["channels"]
