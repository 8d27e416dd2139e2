"""The Grafana dashboard and the Prometheus alerting rules query only metrics the services export (scraped
from the five services running for real), and each service's resident memory fits its Deployment's request.

`APEV_MEMORY_RESULTS=bench/results/memory.json` also records the measured RSS (the sizing in the README)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from apev_contracts.topics import all_topics
from apev_stack.kafka import create_topics, free_port
from apev_workspace.testing import running_workspace

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.e2e]

DEPLOY = Path(__file__).resolve().parents[1]
DASHBOARD = DEPLOY / "observability" / "grafana-dashboard.json"
RULES = DEPLOY / "observability" / "prometheus-rules.yaml"

# Topics each service consumes (as in tests/test_service_skeletons.py and the KEDA triggers).
CONSUMES = {
    "ingest": ["datasource.created", "run.finished"],
    "jobs": ["job.requested"],
    "serving": ["run.finished", "endpoint.scale.requested"],
    "writeback": ["insight.created"],
    "monitor": ["run.finished", "cost.sampled", "serving.latency.sampled"],
}


@dataclass
class LiveService:
    name: str
    port: int
    process: asyncio.subprocess.Process
    output: bytearray = field(default_factory=bytearray)
    metrics: str = ""


def exported_names(metrics_text: str) -> set[str]:
    """Every name a PromQL query may use against this exposition: families (also those with no sample yet,
    listed by their `# TYPE` line), their histogram/summary series, and every sample name."""
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {name + s for s in ("_bucket", "_sum", "_count", "_created")}
            if kind == "counter":
                names |= {name.removesuffix("_total") + "_total", name.removesuffix("_total") + "_created"}
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def rss_bytes(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("process_resident_memory_bytes not exported")


@contextlib.asynccontextmanager
async def live_services(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, ws_host: str, ws_token: str, mcp_url: str, mcp_key: str
) -> AsyncIterator[dict[str, LiveService]]:
    prefix = f"d{uuid.uuid4().hex[:8]}."
    await create_topics(kafka_bootstrap, [prefix + t for t in all_topics()], partitions=2)
    running: dict[str, LiveService] = {}
    pumps = []
    try:
        for name in CONSUMES:
            up, port = name.upper(), free_port()
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "KAFKA_TOPIC_PREFIX": prefix,
                "DATABRICKS_HOST": ws_host,
                "DATABRICKS_TOKEN": ws_token,
                "MCP_BASE_URL": mcp_url,
                "MCP_API_KEY": mcp_key,
                f"{up}_DATABASE_URL": pg_url,
                f"{up}_DATABASE_SCHEMA": f"{prefix.rstrip('.')}_{name}",
                f"{up}_HTTP_PORT": str(port),
                f"{up}_DATA_DIR": str(tmp_path / name),
                f"{up}_LOG_FORMAT": "json",
                f"{up}_PUBLIC_URL": "http://127.0.0.1:9",
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"apev_{name}", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            svc = running[name] = LiveService(name, port, proc)
            pumps.append(asyncio.create_task(_pump(svc)))
        async with httpx.AsyncClient() as http:
            await asyncio.gather(*(_until_ready(http, s) for s in running.values()))
            for svc in running.values():
                svc.metrics = (await http.get(f"http://127.0.0.1:{svc.port}/metrics", timeout=10)).text
        yield running
    finally:
        for svc in running.values():
            if svc.process.returncode is None:
                svc.process.terminate()
        for svc in running.values():
            try:
                await asyncio.wait_for(svc.process.wait(), 60)
            except TimeoutError:
                svc.process.kill()
                await svc.process.wait()
        for pump in pumps:
            pump.cancel()


async def _pump(svc: LiveService) -> None:
    assert svc.process.stdout is not None
    while chunk := await svc.process.stdout.read(4096):
        svc.output.extend(chunk)


async def _until_ready(http: httpx.AsyncClient, svc: LiveService, timeout: float = 90.0) -> None:
    url = f"http://127.0.0.1:{svc.port}/readyz"
    async with asyncio.timeout(timeout):
        while True:
            if svc.process.returncode is not None:
                raise AssertionError(f"{svc.name} exited {svc.process.returncode}:\n{svc.output.decode()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url, timeout=10)).status_code == 200:
                    return
            await asyncio.sleep(0.3)


PROMQL_WORDS = {
    # functions and keywords that look like names in a PromQL expression
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "label_replace", "label_join",
    "vector", "scalar", "time", "abs", "ceil", "floor", "round", "clamp_min", "clamp_max", "absent",
    "absent_over_time", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "last_over_time",
    "quantile_over_time", "changes", "resets", "sort", "sort_desc", "timestamp", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Names of series an expression selects: identifiers outside label matchers, grouping lists and
    strings that are not PromQL functions or keywords (Grafana's `$variables` dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\$\w+|\$\{[^}]*\}", "", text)
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w(]*\s*\()", text))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?|e\d*", n)}


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", []) if t.get("expr")]


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def test_metric_names_parser_sees_names_not_functions() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, endpoint_name) "
        '(rate(apev_monitor_serving_latency_ms_bucket{x="a b"}[5m]))) > 500'
    )
    assert metric_names(expr) == {"apev_monitor_serving_latency_ms_bucket"}
    assert metric_names('sum(rate(apev_delivery_messages_total{consumer=~"$consumer"}[5m])) by (outcome)') == {
        "apev_delivery_messages_total"
    }


@pytest.fixture(scope="module")
async def services(kafka_bootstrap: str, pg_url: str, mcp_sim, tmp_path_factory) -> dict[str, LiveService]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("live")
    with running_workspace(tmp / "ws") as ws:
        async with live_services(
            kafka_bootstrap, pg_url, tmp, ws.host, ws.admin_token, mcp_sim.base_url, mcp_sim.admin_key
        ) as running:
            yield running


async def test_dashboard_queries_only_exported_metrics(services: dict[str, LiveService]) -> None:
    exported = set().union(*(exported_names(s.metrics) for s in services.values()))
    queried = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert len(queried) >= 15, queried  # the parser found the dashboard's metrics
    missing = queried - exported - recorded_names()
    assert not missing, f"the dashboard queries metrics no service exports: {sorted(missing)}"


async def test_alert_rules_query_only_exported_metrics(services: dict[str, LiveService]) -> None:
    exported = set().union(*(exported_names(s.metrics) for s in services.values()))
    queried = set().union(*(metric_names(e) for e in rule_exprs()))
    assert queried, "no expressions found"
    missing = queried - exported - recorded_names()
    assert not missing, f"the alerting rules query metrics no service exports: {sorted(missing)}"


def _memory_request_mib(service: str) -> float:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "base" / f"{service}.yaml").read_text())
    (dep,) = [d for d in docs if d and d["kind"] == "Deployment"]
    value = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
    assert value.endswith("Mi"), value
    return float(value[:-2])


async def test_resident_memory_fits_the_deployments_requests(services: dict[str, LiveService]) -> None:
    measured = {name: rss_bytes(s.metrics) / 2**20 for name, s in services.items()}
    if target := os.environ.get("APEV_MEMORY_RESULTS"):
        Path(target).write_text(
            json.dumps(
                {
                    "benchmark": "service_memory",
                    "when": datetime.now(UTC).isoformat(),
                    "how": "each service started (python -m apev_<svc>, PostgreSQL, Kafka, local workspace, MCP "
                    "simulator), ready, idle; process_resident_memory_bytes from its /metrics",
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "rss_mib": {k: round(v, 1) for k, v in sorted(measured.items())},
                },
                indent=2,
            )
            + "\n"
        )
    for name, rss in measured.items():
        assert name in CONSUMES
        assert rss < _memory_request_mib(name), f"{name}: {rss:.0f} MiB resident, request {_memory_request_mib(name)}"
