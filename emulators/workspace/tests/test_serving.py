"""Model Serving: endpoint lifecycle, invocations in every input shape, traffic split, updates, scale to zero."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, NotFound, ResourceAlreadyExists, ResourceConflict
from databricks.sdk.service.serving import (
    ChatMessage,
    ChatMessageRole,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointTag,
    Route,
    ServedEntityInput,
    TrafficConfig,
)

from apev_workspace.serving.testing import register_version, wait_endpoint
from apev_workspace.testing import RunningWorkspace, running_workspace

MODEL = """
import time

VERSION = {version!r}


def predict(inputs):
    if inputs.get("fail"):
        raise ValueError("the model refuses: " + str(inputs["fail"]))
    if inputs.get("sleep"):
        time.sleep(float(inputs["sleep"]))
    if "messages" in inputs:
        return {{"content": "v" + VERSION + " answers: " + inputs["messages"][-1]["content"]}}
    return {{"version": VERSION, "inputs": inputs}}
"""


@pytest.fixture
def sws(tmp_path: Path) -> Iterator[RunningWorkspace]:
    """A workspace whose serving transitions are short (0.2 s) and cold starts measurable (0.3 s)."""
    with running_workspace(tmp_path / "workspace", executor_slots=2) as running:
        serving = running.workspace.serving
        serving.transition_seconds, serving.cold_start_seconds, serving.idle_seconds = 0.2, 0.3, 3600
        yield running


def entity(version: int, name: str | None = None, **extra: object) -> ServedEntityInput:
    return ServedEntityInput(
        entity_name="main.agents.dental",
        entity_version=str(version),
        name=name,
        workload_size=str(extra.pop("workload_size", "Small")),
        scale_to_zero_enabled=bool(extra.pop("scale_to_zero_enabled", False)),
    )


def deploy(w: WorkspaceClient, name: str, *entities: ServedEntityInput, routes: list[Route] | None = None) -> None:
    traffic = TrafficConfig(routes=routes) if routes else None
    w.serving_endpoints.create(
        name=name,
        config=EndpointCoreConfigInput(name=name, served_entities=list(entities), traffic_config=traffic),
        tags=[EndpointTag(key="ap_tenant_id", value="t1")],
    )


def test_endpoint_goes_not_ready_to_ready_and_answers_through_the_model(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    deploy(w, "dental", entity(v1))
    first = w.serving_endpoints.get("dental")
    assert first.state.ready.value == "NOT_READY" and first.state.config_update.value == "IN_PROGRESS"
    assert first.pending_config is not None and first.config is None
    started = time.monotonic()
    ready = wait_endpoint(w, "dental")
    assert time.monotonic() - started >= 0.1  # the transition takes real time
    assert ready.state.ready.value == "READY" and ready.state.config_update.value == "NOT_UPDATING"
    assert ready.pending_config is None and ready.config.config_version == 1
    served = ready.config.served_entities[0]
    assert (served.name, served.entity_version, served.workload_size) == ("dental-1", "1", "Small")
    assert served.state.deployment.value == "DEPLOYMENT_READY"
    assert ready.config.traffic_config.routes[0].traffic_percentage == 100

    answer = w.serving_endpoints.query("dental", dataframe_records=[{"q": "production"}, {"q": "payroll"}])
    assert answer.predictions == [
        {"version": "1", "inputs": {"q": "production"}},
        {"version": "1", "inputs": {"q": "payroll"}},
    ]
    assert answer.served_model_name == "dental-1"
    assert [e.name for e in w.serving_endpoints.list()] == ["dental"]
    tags = w.serving_endpoints.patch("dental", add_tags=[EndpointTag(key="ap_agent_id", value="a1")])
    assert {t.key: t.value for t in tags.tags or []} == {"ap_tenant_id": "t1", "ap_agent_id": "a1"}
    with pytest.raises(ResourceAlreadyExists):
        deploy(w, "dental", entity(v1))
    w.serving_endpoints.delete("dental")
    with pytest.raises(NotFound):
        w.serving_endpoints.get("dental")


def test_every_input_shape_and_model_errors(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    deploy(w, "shapes", entity(v1))
    wait_endpoint(w, "shapes")
    split = w.serving_endpoints.query("shapes", dataframe_split=DataframeSplitInput(columns=["a", "b"], data=[[1, 2]]))
    assert split.predictions == [{"version": "1", "inputs": {"a": 1, "b": 2}}]
    columnar = w.serving_endpoints.query("shapes", inputs={"a": [1, 2]})
    assert [p["inputs"] for p in columnar.predictions] == [{"a": 1}, {"a": 2}]
    one = w.serving_endpoints.query("shapes", inputs={"question": "kpis?"})
    assert one.predictions == {"version": "1", "inputs": {"question": "kpis?"}}
    rows = w.serving_endpoints.query("shapes", instances=[{"x": 1}, 7])
    assert [p["inputs"] for p in rows.predictions] == [{"x": 1}, {"input": 7}]
    chat = w.serving_endpoints.query(
        "shapes", messages=[ChatMessage(role=ChatMessageRole.USER, content="how was production?")], max_tokens=50
    )
    assert chat.object.value == "chat.completion"
    assert chat.choices[0].message.content == "v1 answers: how was production?"
    assert chat.choices[0].message.role.value == "assistant" and chat.usage.total_tokens > 0

    with pytest.raises(BadRequest) as raised:
        w.serving_endpoints.query("shapes", dataframe_records=[{"fail": "bad tenant"}])
    assert "ValueError: the model refuses: bad tenant" in str(raised.value)
    with sws.admin_http() as http:
        raw = http.post("/serving-endpoints/shapes/invocations", json={"dataframe_records": [{"fail": "x"}]})
        assert raw.status_code == 400 and raw.json()["error_code"] == "BAD_REQUEST"
        assert "Traceback" in raw.json()["stack_trace"]
        both = http.post("/serving-endpoints/shapes/invocations", json={"inputs": {}, "instances": []})
        assert both.status_code == 400
    with pytest.raises(NotFound):
        w.serving_endpoints.query("nowhere", inputs={"a": 1})


def test_traffic_split_80_20_over_1000_requests(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    v2 = register_version(sws, "main.agents.dental", MODEL.format(version="2"))
    routes = [
        Route(served_entity_name="champion", traffic_percentage=80),
        Route(served_entity_name="challenger", traffic_percentage=20),
    ]
    deploy(w, "ab", entity(v1, "champion"), entity(v2, "challenger"), routes=routes)
    wait_endpoint(w, "ab")
    counts: Counter[str] = Counter()
    for i in range(1000):
        answer = w.serving_endpoints.query("ab", dataframe_records=[{"i": i}])
        assert answer.predictions[0]["version"] == {"champion": "1", "challenger": "2"}[answer.served_model_name]
        counts[answer.served_model_name] += 1
    assert abs(counts["champion"] - 800) <= 50 and abs(counts["challenger"] - 200) <= 50
    latencies = sws.workspace.serving.latencies("ab")
    assert len(latencies) == 1000 and all(ms > 0 for _, ms, _ in latencies)
    metrics = w.serving_endpoints.export_metrics("ab").contents.read().decode()
    assert 'request_latency_ms_count{served_entity_name="champion"} ' in metrics


def test_config_update_to_a_new_version_loses_no_request(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    deploy(w, "rolling", entity(v1, "agent"))
    wait_endpoint(w, "rolling")
    v2 = register_version(sws, "main.agents.dental", MODEL.format(version="2"))
    seen: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load() -> None:
        client = sws.client()
        while not stop.is_set():
            try:
                seen.append(client.serving_endpoints.query("rolling", dataframe_records=[{}]).predictions[0]["version"])
            except BaseException as err:  # any failed request fails the test
                errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    updating = w.serving_endpoints.update_config("rolling", served_entities=[entity(v2, "agent")]).response
    during = len(seen)
    assert updating.state.config_update.value == "IN_PROGRESS" and updating.state.ready.value == "READY"
    assert updating.pending_config.config_version == 2 and updating.config.config_version == 1
    with pytest.raises(ResourceConflict):
        w.serving_endpoints.update_config("rolling", served_entities=[entity(v1, "agent")])
    done = wait_endpoint(w, "rolling")
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert during > 0 and set(seen[:during]) == {"1"}  # the old version served until the new one was READY
    assert seen[-1] == "2" and set(seen) == {"1", "2"}
    assert done.config.config_version == 2 and done.config.served_entities[0].entity_version == "2"


def test_a_failed_update_keeps_the_old_config_serving(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    broken = register_version(sws, "main.agents.dental", "x = 1\n")
    deploy(w, "steady", entity(v1, "agent"))
    wait_endpoint(w, "steady")
    w.serving_endpoints.update_config("steady", served_entities=[entity(broken, "agent")])
    failed = wait_endpoint(w, "steady")
    assert failed.state.config_update.value == "UPDATE_FAILED" and failed.state.ready.value == "READY"
    reason = failed.pending_config.served_entities[0].state
    assert reason.deployment.value == "DEPLOYMENT_FAILED" and "predict" in reason.deployment_state_message
    assert w.serving_endpoints.query("steady", inputs={"q": 1}).predictions["version"] == "1"
    with pytest.raises(NotFound):
        w.serving_endpoints.update_config("steady", served_entities=[entity(99, "agent")])


def test_scale_to_zero_and_the_cold_start(sws: RunningWorkspace) -> None:
    w = sws.client()
    v1 = register_version(sws, "main.agents.dental", MODEL.format(version="1"))
    deploy(w, "sleepy", entity(v1, "agent", scale_to_zero_enabled=True))
    wait_endpoint(w, "sleepy")
    warm = time.monotonic()
    w.serving_endpoints.query("sleepy", inputs={"q": 1})
    warm = time.monotonic() - warm
    replica = sws.workspace.serving.replica("sleepy", "agent")
    sws.workspace.serving.idle_seconds = 0.2
    deadline = time.monotonic() + 5
    while replica.state != "stopped":
        assert time.monotonic() < deadline, "the idle entity did not scale to zero"
        time.sleep(0.02)
    assert w.serving_endpoints.get("sleepy").state.ready.value == "READY"
    sws.workspace.serving.idle_seconds = 3600
    cold = time.monotonic()
    assert w.serving_endpoints.query("sleepy", inputs={"q": 2}).predictions["version"] == "1"
    cold = time.monotonic() - cold
    assert cold >= 0.3 > warm  # the first request after scale to zero pays the worker's start
    assert replica.starts == 2


PEAK = """
import threading
import time

lock = threading.Lock()
running = peak = 0


def predict(inputs):
    global running, peak
    with lock:
        running += 1
        peak = max(peak, running)
    time.sleep(0.3)
    with lock:
        running -= 1
    return {"peak": peak}
"""


def test_concurrency_limit_per_workload_size(sws: RunningWorkspace) -> None:
    w = sws.client()
    version = register_version(sws, "main.agents.peak", PEAK)
    for name, size in (("small", "Small"), ("medium", "Medium")):
        served = ServedEntityInput(entity_name="main.agents.peak", entity_version=str(version), workload_size=size)
        w.serving_endpoints.create(name=name, config=EndpointCoreConfigInput(name=name, served_entities=[served]))
    wait_endpoint(w, "small")
    wait_endpoint(w, "medium")

    def peak(name: str) -> int:
        """Send 12 requests at once; the most the model ever ran at the same time."""
        answers: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(w.serving_endpoints.query(name, inputs={}).predictions["peak"])
            )
            for _ in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 12
        return max(answers)

    assert peak("small") == 4  # Small: 4 requests at a time, the rest wait for a slot
    assert peak("medium") > 4  # Medium: up to 16


def test_endpoints_come_back_after_a_restart_and_read_secrets(tmp_path: Path) -> None:
    code = (
        "import os\n\ndef predict(inputs):\n    return {'key': os.environ['MCP_KEY'], 'plain': os.environ['PLAIN']}\n"
    )
    with running_workspace(tmp_path / "ws") as first:
        first.workspace.serving.transition_seconds = 0.1
        w = first.client()
        w.secrets.create_scope("agentprovision_t1")
        w.secrets.put_secret("agentprovision_t1", "mcp_api_key", string_value="t1_sk_secret")
        version = register_version(first, "main.agents.env", code)
        served = ServedEntityInput(
            entity_name="main.agents.env",
            entity_version=str(version),
            workload_size="Small",
            scale_to_zero_enabled=False,
            environment_vars={"MCP_KEY": "{{secrets/agentprovision_t1/mcp_api_key}}", "PLAIN": "x"},
        )
        w.serving_endpoints.create(name="env", config=EndpointCoreConfigInput(name="env", served_entities=[served]))
        wait_endpoint(w, "env")
        assert w.serving_endpoints.query("env", inputs={}).predictions == {"key": "t1_sk_secret", "plain": "x"}
    with running_workspace(tmp_path / "ws") as second:
        w = second.client()
        endpoint = w.serving_endpoints.get("env")
        assert endpoint.state.ready.value == "READY" and endpoint.config.config_version == 1
        assert w.serving_endpoints.query("env", inputs={}).predictions["key"] == "t1_sk_secret"
