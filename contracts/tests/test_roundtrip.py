"""Property-based: every generated valid event survives encode -> Kafka bytes -> decode unchanged, and
arbitrary input never escapes as anything but a ContractError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from apev_contracts import (
    CostSampled,
    DatasourceCreated,
    DatasourceRemoved,
    DatasourceUpdated,
    EndpointScaleRequested,
    ErasureRequested,
    InsightCreated,
    JobRequested,
    LineageEmitted,
    RunFinished,
    ServingLatencySampled,
    TenantOffboarded,
    WritebackOutcomeRecorded,
    all_specs,
    decode,
    encode,
    new_event,
)
from apev_contracts.cron import CronError, validate_quartz_cron
from apev_contracts.errors import ContractError
from apev_contracts.events.serving import LATENCY_BUCKET_BOUNDS_MS

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rx(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


tenant_ids = st.one_of(rx(r"[a-z0-9][a-z0-9-]{0,20}"), st.uuids().map(str))
identifiers = rx(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,30}")
numeric_ids = rx(r"[1-9][0-9]{0,18}")
names = st.text(min_size=1, max_size=40)
texts = st.text(max_size=80)
entity_names = rx(r"[a-z][a-z0-9_]{0,20}")
task_keys = rx(r"[A-Za-z0-9_.-]{1,20}")
param_names = rx(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}")
state_names = rx(r"[A-Z][A-Z0-9_]{0,20}")
paths = rx(r"/(Workspace|Volumes)/[a-z0-9_]{1,10}/[a-z0-9_]{1,10}\.(py|sql)")
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/Paris")]
)
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=zones)
# Adding a timedelta to a ZoneInfo datetime is wall-clock arithmetic (a DST fold can make it go backwards):
# derive later times from the UTC instant.
later = st.builds(lambda t: t.astimezone(UTC), aware)
amounts = st.decimals(min_value=0, max_value=10**12, places=6, allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
params = st.dictionaries(param_names, texts, max_size=4)
tags = st.dictionaries(rx(r"[A-Za-z0-9_.:/=+@-]{1,20}"), st.text(max_size=30), max_size=5)
systems = st.sampled_from(["adp", "netsuite", "dentalintel", "eaglesoft", "dentrix", "snowflake"])
kinds = st.sampled_from(["ingest", "agent-deploy", "agent-insights", "adhoc"])
job_keys = rx(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}")


@st.composite
def quartz(draw: st.DrawFn) -> str:
    def part(low: int, high: int) -> st.SearchStrategy[str]:
        n = st.integers(low, high).map(str)
        ranges = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda t: f"{t[0]}-{t[1]}")
        steps = st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, high)).map(lambda t: f"{t[0]}/{t[1]}")
        lists = st.lists(st.integers(low, high), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v)))
        return st.one_of(st.just("*"), n, ranges, steps, lists)

    dom = draw(st.one_of(part(1, 31), st.sampled_from(["L", "LW", "L-3", "15W"])))
    dow = draw(st.one_of(part(1, 7), st.sampled_from(["MON-FRI", "SAT,SUN", "6L", "FRI#3", "L"])))
    if draw(st.booleans()):
        dom = "?"
    else:
        dow = "?"
    month = draw(st.one_of(part(1, 12), st.sampled_from(["JAN", "jan-jun", "MAR,DEC"])))
    fields = [draw(part(0, 59)), draw(part(0, 59)), draw(part(0, 23)), dom, month, dow]
    if draw(st.booleans()):
        fields.append(draw(st.one_of(st.just("*"), st.integers(1970, 2099).map(str))))
    return " ".join(fields)


schedules: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    quartz_cron_expression=quartz(),
    timezone_id=st.sampled_from(["UTC", "America/Los_Angeles", "Europe/Paris", "Asia/Kolkata"]),
    pause_status=st.sampled_from(["PAUSED", "UNPAUSED"]),
)


@st.composite
def datasource_created(draw: st.DrawFn) -> DatasourceCreated:
    return DatasourceCreated(
        tenant_id=draw(tenant_ids),
        datasource_id=draw(identifiers),
        name=draw(names),
        system=draw(systems),
        entities=draw(st.lists(entity_names, min_size=1, max_size=5, unique=True)),
        schedule=draw(st.none() | schedules),
        mcp_tenant_code=draw(rx(r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}")),
        config=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    )


@st.composite
def task(draw: st.DrawFn, key: str, earlier: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["python_task", "sql_task", "notebook_task"]))
    body = {
        "python_task": {"python_file": draw(paths), "parameters": draw(st.lists(texts, max_size=3))},
        "sql_task": {"file": draw(paths), "warehouse_id": draw(st.none() | identifiers), "parameters": draw(params)},
        "notebook_task": {"notebook_path": draw(paths), "base_parameters": draw(params)},
    }[kind]
    deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
    return {
        "task_key": key,
        "depends_on": [{"task_key": d} for d in deps],
        kind: body,
        "timeout_seconds": draw(st.integers(0, 86400)),
        "max_retries": draw(st.integers(0, 10)),
        "description": draw(st.none() | texts),
    }


@st.composite
def job_specs(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(task_keys, min_size=1, max_size=5, unique=True))
    tasks = [draw(task(key, keys[:i])) for i, key in enumerate(keys)]  # depends only on earlier: a DAG
    return {
        "tasks": draw(st.permutations(tasks)),
        "parameters": [
            {"name": n, "default": draw(texts)} for n in draw(st.lists(param_names, max_size=3, unique=True))
        ],
        "schedule": draw(st.none() | schedules),
        "tags": draw(tags),
        "timeout_seconds": draw(st.integers(0, 604800)),
        "max_concurrent_runs": draw(st.integers(1, 1000)),
        "run_as": draw(st.none() | rx(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,30}")),
    }


actions: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(dict, type=st.just("run"), job_parameters=params, only=st.none() | st.lists(task_keys, max_size=3)),
    st.builds(dict, type=st.just("cancel"), run_id=numeric_ids),
    st.builds(dict, type=st.just("delete")),
    st.builds(dict, type=st.just("repair"), run_id=numeric_ids, rerun_all_failed_tasks=st.just(True)),
    st.builds(
        dict, type=st.just("repair"), run_id=numeric_ids, rerun_tasks=st.lists(task_keys, min_size=1, max_size=3),
        latest_repair_id=st.none() | numeric_ids,
    ),
)  # fmt: skip


@st.composite
def job_requested(draw: st.DrawFn) -> JobRequested:
    job = draw(st.none() | job_specs())
    action = draw(actions) if job is None else draw(st.none() | actions)
    return JobRequested(
        tenant_id=draw(tenant_ids), kind=draw(kinds), key=draw(job_keys), job=job, action=action,
        datasource_id=draw(st.none() | identifiers), agent_id=draw(st.none() | identifiers),
    )  # fmt: skip


@st.composite
def run_states(draw: st.DrawFn) -> dict[str, Any]:
    return {"life_cycle_state": draw(state_names), "result_state": draw(st.none() | state_names),
            "state_message": draw(texts)}  # fmt: skip


@st.composite
def run_finished(draw: st.DrawFn) -> RunFinished:
    start = draw(later)
    state = draw(run_states())
    task_runs = [
        {"task_key": k, "run_id": draw(st.none() | numeric_ids), "state": draw(run_states()),
         "start_time": draw(st.none() | aware), "end_time": draw(st.none() | aware)}
        for k in draw(st.lists(task_keys, max_size=3, unique=True))
    ]  # fmt: skip
    from apev_contracts import run_outcome

    return RunFinished(
        tenant_id=draw(tenant_ids),
        job_id=draw(numeric_ids),
        run_id=draw(numeric_ids),
        repair_attempt=draw(st.integers(0, 50)),
        kind=draw(kinds),
        key=draw(job_keys),
        job_name=draw(st.text(min_size=1, max_size=60)),
        request_id=draw(st.none() | identifiers),
        tags=draw(tags),
        job_parameters=draw(params),
        state=state,
        status={"state": draw(state_names), "termination_details": draw(st.none() | st.builds(
            dict, code=state_names, type=state_names, message=texts))},
        outcome=run_outcome(state["life_cycle_state"], state["result_state"]),
        tasks=task_runs,
        start_time=start,
        end_time=start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2))),
        run_page_url=draw(st.none() | rx(r"https?://[a-z0-9.]{1,20}(:[0-9]{2,5})?/#job/[0-9]{1,6}/run/[0-9]{1,6}")),
    )  # fmt: skip


@st.composite
def insight_created(draw: st.DrawFn) -> InsightCreated:
    return InsightCreated(
        tenant_id=draw(tenant_ids), insight_id=draw(identifiers), agent_id=draw(identifiers),
        target_system=draw(systems), entity_type=draw(entity_names), entity_id=draw(identifiers),
        changes=draw(st.dictionaries(rx(r"[A-Za-z_][A-Za-z0-9_.]{0,20}"), json_values, min_size=1, max_size=5)),
        reason=draw(st.text(min_size=1, max_size=200)),
        confidence=draw(st.floats(0.0, 1.0)), expected_version=draw(st.none() | identifiers),
    )  # fmt: skip


@st.composite
def cost_sampled(draw: st.DrawFn) -> CostSampled:
    start = draw(later)
    return CostSampled(
        tenant_id=draw(tenant_ids), usage_date=start.date(), sku=draw(rx(r"[A-Z0-9][A-Z0-9_]{0,40}")),
        dbus=draw(amounts), dollars=draw(amounts), currency=draw(st.sampled_from(["USD", "EUR"])),
        revision=draw(st.integers(0, 1000)), window_start=start,
        window_end=start + draw(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=1))),
    )  # fmt: skip


@st.composite
def latency_sampled(draw: st.DrawFn) -> ServingLatencySampled:
    buckets = draw(st.lists(st.integers(0, 10_000), min_size=len(LATENCY_BUCKET_BOUNDS_MS),
                            max_size=len(LATENCY_BUCKET_BOUNDS_MS)))  # fmt: skip
    start = draw(later)
    return ServingLatencySampled(
        tenant_id=draw(tenant_ids), endpoint_name=draw(rx(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}")),
        replica_id=draw(identifiers), window_start=start, window_end=start + timedelta(seconds=10),
        count=sum(buckets), sum_ms=draw(st.floats(0, 1e9)), buckets=buckets,
    )  # fmt: skip


@st.composite
def scale_requested(draw: st.DrawFn) -> EndpointScaleRequested:
    return EndpointScaleRequested(
        tenant_id=draw(tenant_ids), endpoint_name=draw(rx(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}")),
        rule=draw(names), reason=draw(st.text(min_size=1, max_size=100)),
        observed_p95_ms=draw(st.none() | st.floats(0, 1e6)), threshold_ms=draw(st.none() | st.floats(0, 1e6)),
        served_entity_name=draw(st.none() | names),
    )  # fmt: skip


@st.composite
def writeback_outcome(draw: st.DrawFn) -> WritebackOutcomeRecorded:
    return WritebackOutcomeRecorded(
        tenant_id=draw(tenant_ids), insight_id=draw(identifiers), agent_id=draw(identifiers),
        target_system=draw(systems), entity_type=draw(entity_names), entity_id=draw(identifiers),
        outcome=draw(st.sampled_from(["applied", "held", "rejected", "conflict", "failed"])),
        decided_via=draw(st.sampled_from(["policy", "http", "slack"])), decided_by=draw(st.none() | names),
        detail=draw(st.none() | texts), change_id=draw(st.none() | identifiers),
        version=draw(st.none() | st.integers(0, 10**6)), attempts=draw(st.integers(0, 100)), occurred_at=draw(later),
    )  # fmt: skip


@st.composite
def datasource_updated(draw: st.DrawFn) -> DatasourceUpdated:
    return DatasourceUpdated(
        tenant_id=draw(tenant_ids), datasource_id=draw(identifiers),
        entities=draw(st.none() | st.lists(entity_names, min_size=1, max_size=4, unique=True)),
        schedule=draw(st.none() | schedules),
    )  # fmt: skip


@st.composite
def datasource_removed(draw: st.DrawFn) -> DatasourceRemoved:
    return DatasourceRemoved(
        tenant_id=draw(tenant_ids), datasource_id=draw(identifiers), drop_tables=draw(st.booleans())
    )


@st.composite
def tenant_offboarded(draw: st.DrawFn) -> TenantOffboarded:
    return TenantOffboarded(
        tenant_id=draw(tenant_ids), reason=draw(st.none() | names),
        export_volume=draw(st.none() | rx(r"/Volumes/[a-z0-9_]{1,10}/[a-z0-9_]{1,10}/[a-z0-9_]{1,10}(/[a-z]{1,9})?")),
    )  # fmt: skip


@st.composite
def erasure_requested(draw: st.DrawFn) -> ErasureRequested:
    return ErasureRequested(
        tenant_id=draw(tenant_ids), employee_id=draw(rx(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}")),
        requested_by=draw(st.none() | names),
    )  # fmt: skip


@st.composite
def lineage_emitted(draw: st.DrawFn) -> LineageEmitted:
    kind = draw(st.sampled_from(["START", "COMPLETE", "FAIL", "ABORT"]))
    run_id, ns, name = str(draw(st.uuids())), draw(names), draw(names)
    dataset = st.builds(dict, namespace=names, name=names)
    return LineageEmitted(
        tenant_id=draw(tenant_ids), event_type=kind, run_id=run_id, job_namespace=ns, job_name=name,
        openlineage={"eventType": kind, "eventTime": "2026-11-24T02:05:00+00:00", "run": {"runId": run_id},
                     "job": {"namespace": ns, "name": name}, "inputs": draw(st.lists(dataset, max_size=3))},
    )  # fmt: skip


STRATEGIES: dict[type[BaseModel], st.SearchStrategy[Any]] = {
    DatasourceCreated: datasource_created(),
    JobRequested: job_requested(),
    RunFinished: run_finished(),
    InsightCreated: insight_created(),
    CostSampled: cost_sampled(),
    ServingLatencySampled: latency_sampled(),
    EndpointScaleRequested: scale_requested(),
    WritebackOutcomeRecorded: writeback_outcome(),
    DatasourceUpdated: datasource_updated(),
    DatasourceRemoved: datasource_removed(),
    TenantOffboarded: tenant_offboarded(),
    ErasureRequested: erasure_requested(),
    LineageEmitted: lineage_emitted(),
}
traceparents = st.none() | st.tuples(rx(r"[0-9a-f]{32}"), rx(r"[0-9a-f]{16}")).filter(
    lambda t: set(t[0]) != {"0"} and set(t[1]) != {"0"}
).map(lambda t: f"00-{t[0]}-{t[1]}-01")


def test_every_registered_model_has_a_strategy() -> None:
    assert set(STRATEGIES) == {spec.model for spec in all_specs()}


@pytest.mark.parametrize("model_cls", list(STRATEGIES), ids=lambda m: m.__name__)
@PROPERTY
@given(data=st.data())
def test_round_trip_through_kafka_bytes(model_cls: type[BaseModel], data: st.DataObject) -> None:
    payload = data.draw(STRATEGIES[model_cls])
    event = new_event(
        payload, tenant_id=payload.tenant_id, source="/apev/test",
        subject=data.draw(st.none() | st.text(min_size=1, max_size=20)), time=data.draw(aware),
    )  # fmt: skip
    traceparent = data.draw(traceparents)
    record = encode(event, traceparent=traceparent)
    decoded = decode(record.value, record.headers, topic=record.topic)
    assert decoded == event
    assert type(decoded.data) is model_cls
    assert decoded.content_hash() == event.content_hash()
    assert record.key == payload.tenant_id.encode()
    assert encode(decoded, traceparent=traceparent) == record  # decoding loses nothing the encoder wrote


@PROPERTY
@given(quartz())
def test_generated_quartz_expressions_are_valid(expression: str) -> None:
    assert validate_quartz_cron(expression) == expression


@PROPERTY
@given(st.text(max_size=60) | st.lists(st.sampled_from(["*", "?", "0", "L", "W", "#", "-", "/", ",", "5", "MON", " "]),
                                       max_size=30).map("".join))  # fmt: skip
def test_cron_validator_fails_only_with_cron_errors(expression: str) -> None:
    try:
        result = validate_quartz_cron(expression)
    except CronError:
        return
    assert result == expression
    assert len(expression.split()) in (6, 7)


@PROPERTY
@given(st.binary(max_size=200) | st.builds(lambda v: v.encode(), st.text(max_size=200)))
def test_decode_fails_only_with_contract_errors(value: bytes) -> None:
    with pytest.raises(ContractError):
        decode(value)


def test_money_round_trips_exactly() -> None:
    sample = CostSampled(
        tenant_id="acme", usage_date=datetime(2026, 1, 1).date(), sku="SKU", dbus=Decimal("0.000001"),
        dollars=Decimal("123456789012.123456"), window_start=datetime(2026, 1, 1, tzinfo=UTC),
        window_end=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip
    decoded = decode(encode(new_event(sample, tenant_id="acme", source="/m")).value)
    assert decoded.data.dollars == Decimal("123456789012.123456")
    assert str(decoded.data.dbus) == "0.000001"
