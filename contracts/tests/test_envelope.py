from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from apev_contracts import (
    CloudEvent,
    ContractError,
    DatasourceCreated,
    InvalidPayload,
    JobRequested,
    MalformedEnvelope,
    RunFinished,
    TopicMismatch,
    UnknownEventType,
    UnsupportedVersion,
    decode,
    encode,
    new_event,
    traceparent_of,
)
from apev_contracts.examples import TENANT, example_payloads

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def run_event(**kwargs: Any) -> CloudEvent[RunFinished]:
    payload = example_payloads()[RunFinished]
    assert isinstance(payload, RunFinished)
    return new_event(payload, tenant_id=TENANT, source="/apev/jobs", **kwargs)


def body(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(encode(run_event()).value)
    value.update(changes)
    return value


def raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


# ---------------------------------------------------------------- new_event and encode


def test_new_event_fills_the_envelope_from_the_registry() -> None:
    event = run_event()
    assert event.type == "com.agentprovision.run.finished.v1"
    assert event.specversion == "1.0"
    assert event.datacontenttype == "application/json"
    assert event.tenantid == TENANT
    assert event.correlationid == event.id  # a new chain starts with the event itself
    assert event.time.tzinfo is UTC
    assert abs((datetime.now(UTC) - event.time).total_seconds()) < 5


def test_new_event_keeps_given_ids_and_refuses_naive_time() -> None:
    event = run_event(id="evt-1", correlation_id="corr-1", subject="run/5001")
    assert (event.id, event.correlationid, event.subject) == ("evt-1", "corr-1", "run/5001")
    with pytest.raises(MalformedEnvelope) as info:
        run_event(time=datetime(2026, 1, 1))
    assert info.value.field == "time"


def test_new_event_refuses_an_unregistered_model() -> None:
    class NotAnEvent(BaseModel):
        x: int

    with pytest.raises(UnknownEventType, match="NotAnEvent is not a registered event model"):
        new_event(NotAnEvent(x=1), tenant_id=TENANT, source="/x")


def test_new_event_refuses_a_payload_of_another_tenant() -> None:
    with pytest.raises(InvalidPayload) as info:
        new_event(example_payloads()[RunFinished], tenant_id="other-tenant", source="/apev/jobs")
    assert info.value.field == "data.tenant_id"
    assert "differs from tenantid 'other-tenant'" in str(info.value)


def test_new_event_refuses_a_malformed_tenant() -> None:
    with pytest.raises(MalformedEnvelope) as info:
        new_event(example_payloads()[RunFinished], tenant_id="ACME", source="/apev/jobs")
    assert info.value.field == "tenantid"


def test_encode_picks_topic_key_and_headers() -> None:
    event = run_event()
    record = encode(event, traceparent=TRACEPARENT)
    assert record.topic == "run.finished"
    assert record.key == TENANT.encode()
    assert record.headers == [
        ("content-type", b"application/cloudevents+json"),
        ("ce_type", b"com.agentprovision.run.finished.v1"),
        ("traceparent", TRACEPARENT.encode()),
    ]
    value = json.loads(record.value)
    assert set(value) == {
        "specversion", "id", "source", "type", "time", "datacontenttype", "tenantid", "correlationid", "data",
    }  # fmt: skip
    assert value["time"].endswith("Z")
    assert value["data"]["run_id"] == "5001"


def test_encode_without_traceparent_sends_no_such_header() -> None:
    assert [k for k, _ in encode(run_event()).headers] == ["content-type", "ce_type"]


def test_encode_rejects_a_malformed_traceparent() -> None:
    with pytest.raises(ContractError) as info:
        encode(run_event(), traceparent="not-a-trace")
    assert info.value.field == "traceparent"


def test_encode_rejects_data_that_does_not_match_the_type() -> None:
    event = CloudEvent[Any](
        id="x", source="/x", type="com.agentprovision.job.requested.v1", time=datetime.now(UTC),
        tenantid=TENANT, correlationid="x", data=example_payloads()[RunFinished],
    )  # fmt: skip
    with pytest.raises(InvalidPayload, match="carries JobRequested, got RunFinished"):
        encode(event)


# ---------------------------------------------------------------- decode


def test_decode_returns_the_typed_event() -> None:
    event = run_event(subject="run/5001")
    record = encode(event, traceparent=TRACEPARENT)
    decoded = decode(record.value, record.headers, topic=record.topic)
    assert decoded == event
    assert isinstance(decoded.data, RunFinished)
    assert traceparent_of(record.headers) == TRACEPARENT


def test_decode_accepts_the_dead_letter_twin_and_unregistered_topics() -> None:
    record = encode(run_event())
    assert decode(record.value, record.headers, topic="run.finished.dlq").id == json.loads(record.value)["id"]
    assert isinstance(decode(record.value, topic="run.finished.dlq").data, RunFinished)
    assert isinstance(decode(record.value, topic="test.0a1b2c3d4e").data, RunFinished)


def test_decode_refuses_a_type_read_from_another_registered_topic() -> None:
    record = encode(run_event())
    with pytest.raises(TopicMismatch) as info:
        decode(record.value, record.headers, topic="job.requested")
    assert info.value.field == "type"
    assert isinstance(info.value, UnknownEventType)


@pytest.mark.parametrize(
    ("value", "error", "field", "text"),
    [
        (b"\xff\xfe", MalformedEnvelope, None, "not JSON"),
        (b"{not json", MalformedEnvelope, None, "not JSON"),
        (b"[1, 2]", MalformedEnvelope, None, "must be a JSON object, got list"),
        (raw(body(tenantid="Acme_Dental")), MalformedEnvelope, "tenantid", "is not a tenant id"),
        (raw({k: v for k, v in body().items() if k != "tenantid"}), MalformedEnvelope, "tenantid", "missing"),
        (raw({k: v for k, v in body().items() if k != "type"}), MalformedEnvelope, "type", "missing"),
        (raw({k: v for k, v in body().items() if k != "data"}), MalformedEnvelope, "data", "missing"),
        (raw(body(specversion="0.3")), MalformedEnvelope, "specversion", "'1.0'"),
        (raw({k: v for k, v in body().items() if k != "specversion"}), MalformedEnvelope, "specversion", "missing"),
        (raw(body(time="2026-11-24T02:00:00")), MalformedEnvelope, "time", "naive datetime"),
        (raw(body(id="")), MalformedEnvelope, "id", "at least 1 character"),
        (raw(body(type="com.example.other.v1")), UnknownEventType, "type", "not a registered event type"),
        (raw(body(type="com.agentprovision.run.finished.v2")), UnsupportedVersion, "type", "major version 2"),
    ],
)
def test_decode_errors_name_the_field(value: bytes, error: type[ContractError], field: str | None, text: str) -> None:
    with pytest.raises(error) as info:
        decode(value)
    assert type(info.value) is error
    assert info.value.field == field
    assert text in str(info.value)
    if field:
        assert str(info.value).startswith(f"{field}: ")


def test_decode_reports_the_envelope_before_the_payload() -> None:
    value = body(tenantid="BAD")
    value["data"]["run_id"] = "not-numeric"
    with pytest.raises(MalformedEnvelope) as info:
        decode(raw(value))
    assert info.value.field == "tenantid"


def test_invalid_payload_names_the_nested_field_path() -> None:
    record = encode(new_event(example_payloads()[JobRequested], tenant_id=TENANT, source="/backend"))
    value = json.loads(record.value)
    value["data"]["job"]["tasks"][1]["task_key"] = "has space"
    with pytest.raises(InvalidPayload) as info:
        decode(raw(value))
    assert info.value.field == "data.job.tasks[1].task_key"
    assert "String should match pattern" in info.value.reason


def test_invalid_payload_reports_missing_fields_and_float_money() -> None:
    value = body()
    del value["data"]["run_id"]
    with pytest.raises(InvalidPayload) as info:
        decode(raw(value))
    assert (info.value.field, info.value.reason) == ("data.run_id", "required field is missing")

    cost = json.loads(encode(new_event(example_payloads()[_cost()], tenant_id=TENANT, source="/m")).value)
    cost["data"]["dollars"] = 4.375
    with pytest.raises(InvalidPayload) as info:
        decode(raw(cost))
    assert info.value.field == "data.dollars"
    assert "float is not accepted" in info.value.reason


def _cost() -> type[BaseModel]:
    from apev_contracts import CostSampled

    return CostSampled


def test_decode_refuses_a_payload_naming_another_tenant() -> None:
    value = body()
    value["data"]["tenant_id"] = "other-tenant"
    with pytest.raises(InvalidPayload) as info:
        decode(raw(value))
    assert info.value.field == "data.tenant_id"


def test_decode_lists_further_errors() -> None:
    value = body()
    value["data"]["run_id"] = "x"
    value["data"]["job_id"] = "y"
    with pytest.raises(InvalidPayload) as info:
        decode(raw(value))
    assert info.value.field == "data.job_id"
    assert "and 1 more: data.run_id" in info.value.reason


def test_headers_must_agree_with_the_value() -> None:
    record = encode(run_event())
    wrong_type = [("content-type", b"application/cloudevents+json"), ("ce_type", b"com.agentprovision.x.v1")]
    with pytest.raises(MalformedEnvelope) as info:
        decode(record.value, wrong_type)
    assert info.value.field == "ce_type"
    with pytest.raises(MalformedEnvelope) as info:
        decode(record.value, [("content-type", b"application/avro")])
    assert info.value.field == "content-type"
    charset = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    assert decode(record.value, charset).id == json.loads(record.value)["id"]


def test_unknown_envelope_extensions_are_ignored() -> None:
    value = body(partitionkey="x", dataschema="https://example.com/s.json")
    event = decode(raw(value))
    assert "partitionkey" not in event.model_dump()


def test_traceparent_of_ignores_malformed_values() -> None:
    assert traceparent_of(None) is None
    assert traceparent_of([("traceparent", b"garbage")]) is None
    assert traceparent_of([("traceparent", b"00-00000000000000000000000000000000-00f067aa0ba902b7-01")]) is None
    assert traceparent_of([("other", b"x"), ("traceparent", TRACEPARENT.encode())]) == TRACEPARENT


def test_contract_errors_are_value_errors_and_survive_pickling() -> None:
    import pickle

    error = InvalidPayload("bad", field="data.x")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (type(copy), copy.field, copy.reason, str(copy)) == (InvalidPayload, "data.x", "bad", "data.x: bad")


# ---------------------------------------------------------------- content hash


def test_content_hash_ignores_id_time_and_correlation() -> None:
    a = run_event(id="1", correlation_id="c1", time=datetime(2026, 1, 1, tzinfo=UTC))
    b = run_event(id="2", correlation_id="c2", time=datetime(2026, 1, 2, tzinfo=UTC))
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 64


def test_content_hash_changes_with_the_content() -> None:
    base = run_event()
    payload = example_payloads()[RunFinished]
    changed = new_event(
        payload.model_copy(update={"repair_attempt": 1}), tenant_id=TENANT, source="/apev/jobs", id=base.id
    )
    assert changed.content_hash() != base.content_hash()
    assert run_event(subject="s").content_hash() != base.content_hash()
    assert new_event(payload, tenant_id=TENANT, source="/other").content_hash() != base.content_hash()


def test_content_hash_survives_the_wire_and_covers_unknown_fields() -> None:
    event = run_event()
    assert decode(encode(event).value).content_hash() == event.content_hash()
    value = body()
    with_extra = json.loads(json.dumps(value))
    with_extra["data"]["added_later"] = "x"
    assert decode(raw(with_extra)).content_hash() != decode(raw(value)).content_hash()


def test_content_hash_is_the_sha256_of_the_canonical_json_inboxes_store() -> None:
    """Inboxes keep the hashes of events processed by earlier releases: the formula may never drift."""
    import hashlib

    from pydantic_core import to_jsonable_python

    for payload in example_payloads().values():
        tenant = getattr(payload, "tenant_id", TENANT)
        event = new_event(payload, tenant_id=tenant, source="/apev/é", subject="s/ü")
        canonical = json.dumps(
            {
                "type": event.type,
                "source": event.source,
                "subject": event.subject,
                "tenantid": event.tenantid,
                "data": to_jsonable_python(event.data),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert event.content_hash() == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_envelope_is_immutable() -> None:
    event = run_event()
    with pytest.raises(ValidationError):
        event.id = "other"  # type: ignore[misc]


def test_a_bad_cron_in_a_received_event_names_its_path() -> None:
    record = encode(new_event(example_payloads()[DatasourceCreated], tenant_id=TENANT, source="/backend"))
    value = json.loads(record.value)
    value["data"]["schedule"]["quartz_cron_expression"] = "0 0 2 * * MON"
    with pytest.raises(InvalidPayload) as info:
        decode(raw(value), record.headers, topic=record.topic)
    assert info.value.field == "data.schedule.quartz_cron_expression"
    assert "'?' must be used in exactly one of day-of-month and day-of-week" in info.value.reason
