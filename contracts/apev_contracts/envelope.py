"""The CloudEvents 1.0 envelope in structured mode on Kafka (ARCHITECTURE §8), and its encoding.

Value: one JSON object (`specversion`, `id`, `source`, `type`, `time`, optional `subject`, `datacontenttype`,
the extensions `tenantid` and `correlationid`, and `data`). Headers: `content-type:
application/cloudevents+json`, `ce_type` (a copy of `type`, for filtering without parsing) and `traceparent`
when the caller has one. Key: the tenant id in UTF-8, so one tenant's events stay in order on one partition.

Unknown top-level attributes (other CloudEvents extensions) are accepted and dropped: the spec asks
consumers to tolerate them, and nothing here reads them. They are not part of `content_hash`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails, to_jsonable_python

from apev_contracts.common import TenantId, UtcDatetime
from apev_contracts.errors import ContractError, InvalidPayload, MalformedEnvelope, TopicMismatch
from apev_contracts.registry import spec_for_model, spec_for_type
from apev_contracts.topics import DLQ_SUFFIX, TOPICS

CONTENT_TYPE: Final = "application/cloudevents+json"
HEADER_CONTENT_TYPE: Final = "content-type"
HEADER_CE_TYPE: Final = "ce_type"
HEADER_TRACEPARENT: Final = "traceparent"
_TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$")

DataT = TypeVar("DataT")
ModelT = TypeVar("ModelT", bound=BaseModel)


def _require_specversion(schema: dict[str, Any]) -> None:
    required = schema.setdefault("required", [])
    if isinstance(required, list) and "specversion" not in required:
        required.insert(0, "specversion")


class _TenantMismatch(ValueError):
    """Raised inside validation so the error can be reported at `data.tenant_id`."""


AttributeText = Annotated[str, Field(min_length=1, max_length=256)]

# What `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)` builds on every call, built
# once: the same bytes (content hashes stored in inboxes must not change), without the per-call constructor.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class CloudEvent(BaseModel, Generic[DataT]):
    """One event. `CloudEvent[RunFinished]` is what a handler receives; build one with `new_event`."""

    # `specversion` has a default for Python callers, but on the wire CloudEvents requires it.
    model_config = ConfigDict(
        frozen=True, extra="ignore", use_attribute_docstrings=True, json_schema_extra=_require_specversion
    )

    specversion: Literal["1.0"] = "1.0"
    id: AttributeText
    source: Annotated[str, Field(min_length=1, max_length=512)]
    """URI-reference of the producer, e.g. `/apev/jobs` or `/agentprovision/backend`."""
    type: Annotated[str, Field(min_length=1, max_length=256)]
    time: UtcDatetime
    subject: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    datacontenttype: Literal["application/json"] = "application/json"
    tenantid: TenantId
    correlationid: AttributeText
    data: DataT

    @field_validator("data")
    @classmethod
    def _tenant_matches_envelope(cls, data: DataT, info: ValidationInfo) -> DataT:
        # A payload naming another tenant than its envelope would let one tenant's event touch another's data.
        data_tenant = getattr(data, "tenant_id", None)
        envelope_tenant = info.data.get("tenantid")
        if data_tenant is not None and envelope_tenant is not None and data_tenant != envelope_tenant:
            raise _TenantMismatch(f"{data_tenant!r} differs from tenantid {envelope_tenant!r}")
        return data

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of type, source, subject, tenantid and data: equal for a redelivery,
        different when the same id arrives with other content. Not id, time or tracing."""
        canonical = _CANONICAL_JSON.encode(
            {
                "type": self.type,
                "source": self.source,
                "subject": self.subject,
                "tenantid": self.tenantid,
                "data": to_jsonable_python(self.data),
            }
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KafkaRecord:
    """What to hand to a Kafka producer."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    topic: str


def new_event(
    data: ModelT,
    *,
    tenant_id: str,
    source: str,
    correlation_id: str | None = None,
    subject: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[ModelT]:
    """Wrap a payload in an envelope; `type` comes from the payload model's registration. The id defaults to a
    random UUID (pass a deterministic one from `apev_contracts.ids` when the event has a cause), the
    correlation id to the event id, the time to now (UTC)."""
    spec = spec_for_model(type(data))
    event_id = id if id is not None else str(uuid.uuid4())
    event_cls = event_class(spec.model)
    try:
        event = event_cls(
            id=event_id,
            source=source,
            type=spec.type,
            time=time if time is not None else datetime.now(UTC),
            subject=subject,
            tenantid=tenant_id,
            correlationid=correlation_id if correlation_id is not None else event_id,
            data=data,
        )
    except ValidationError as exc:
        raise _contract_error(exc, MalformedEnvelope) from None
    return cast(CloudEvent[ModelT], event)


def encode(event: CloudEvent[Any], *, traceparent: str | None = None) -> KafkaRecord:
    """The Kafka record of an event: topic from the registry, key = tenant id, value = the structured-mode JSON."""
    spec = spec_for_type(event.type)
    if not isinstance(event.data, spec.model):
        raise InvalidPayload(
            f"type {event.type!r} carries {spec.model.__name__}, got {type(event.data).__name__}", field="data"
        )
    if traceparent is not None and not _TRACEPARENT.fullmatch(traceparent):
        raise ContractError(f"{traceparent[:80]!r} is not a W3C traceparent", field="traceparent")
    body = event.model_dump(mode="json")
    if body.get("subject") is None:
        body.pop("subject", None)  # CloudEvents: an absent optional attribute is omitted, not null
    headers = [(HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()), (HEADER_CE_TYPE, event.type.encode())]
    if traceparent is not None:
        headers.append((HEADER_TRACEPARENT, traceparent.encode()))
    value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return KafkaRecord(key=event.tenantid.encode("utf-8"), value=value, headers=headers, topic=spec.topic)


def decode(
    value: bytes, headers: Sequence[tuple[str, bytes]] | None = None, *, topic: str | None = None
) -> CloudEvent[Any]:
    """The event in a Kafka value, with `data` parsed into the model registered for its type.

    Raises `MalformedEnvelope`, `UnknownEventType` (`TopicMismatch` when `topic` is a registered topic, or its
    `.dlq` twin, that the type does not belong to; other topics, e.g. a test's private topic, are not
    checked), `UnsupportedVersion` or `InvalidPayload`, each naming the field.
    """
    header_map = _headers(headers)
    content_type = header_map.get(HEADER_CONTENT_TYPE)
    if content_type is not None and content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        raise MalformedEnvelope(f"{content_type[:80]!r} is not {CONTENT_TYPE}", field=HEADER_CONTENT_TYPE)
    fast = _decode_by_header(value, header_map.get(HEADER_CE_TYPE), topic)
    if fast is not None:
        return fast
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEnvelope(f"the value is not JSON ({exc})") from None
    except TypeError:
        raise MalformedEnvelope(f"the value must be bytes, got {type(value).__name__}") from None
    if not isinstance(raw, dict):
        raise MalformedEnvelope(f"the value must be a JSON object, got {type(raw).__name__}")
    if "specversion" not in raw:
        raise MalformedEnvelope("required field is missing", field="specversion")
    ce_type = raw.get("type")
    if not isinstance(ce_type, str) or not ce_type:
        raise MalformedEnvelope("missing or not a string", field="type")
    header_type = header_map.get(HEADER_CE_TYPE)
    if header_type is not None and header_type != ce_type:
        raise MalformedEnvelope(
            f"header {header_type!r} differs from the event's type {ce_type!r}", field=HEADER_CE_TYPE
        )
    # One validation on the happy path. On any failure the envelope is checked first, so a bad tenant id or
    # time is reported as such even when the type or the data is bad too.
    try:
        spec = spec_for_type(ce_type)
        if topic is not None:
            base = topic.removesuffix(DLQ_SUFFIX)
            if base in TOPICS and base != spec.topic:
                raise TopicMismatch(f"{ce_type!r} belongs to topic {spec.topic!r}, read from {topic!r}", field="type")
        return event_class(spec.model).model_validate_json(value)
    except (ContractError, ValidationError) as exc:
        try:
            event_class(None).model_validate(raw)
        except ValidationError as envelope_exc:
            raise _contract_error(envelope_exc, MalformedEnvelope, envelope_only=True) from None
        if isinstance(exc, ValidationError):
            raise _contract_error(exc, InvalidPayload) from None
        raise


def _decode_by_header(value: bytes, header_type: str | None, topic: str | None) -> CloudEvent[Any] | None:
    """The common case in one validation: the `ce_type` header names the model, the value is parsed once. None
    whenever anything is off (no header, unknown type, invalid value, a type that differs from the header's,
    a missing `specversion`): `decode` then takes the long way, which names what is wrong."""
    if header_type is None:
        return None
    try:
        spec = spec_for_type(header_type)
    except ContractError:
        return None
    if topic is not None:
        base = topic.removesuffix(DLQ_SUFFIX)
        if base in TOPICS and base != spec.topic:
            return None
    try:
        event = event_class(spec.model).model_validate_json(value)
    except ValidationError:
        return None
    if event.type != header_type or "specversion" not in event.model_fields_set:
        return None
    return event


_EVENT_CLASSES: dict[type[BaseModel] | None, type[CloudEvent[Any]]] = {}


def event_class(model: type[BaseModel] | None) -> type[CloudEvent[Any]]:
    """`CloudEvent[model]` (`None`: `CloudEvent[Any]`), built once per model and kept.

    Pydantic's own cache of parametrised generics holds them weakly, so on a busy consumer they are
    collected and rebuilt (docstring extraction included): ~15 ms each, measured in the delivery benchmark.
    """
    cls = _EVENT_CLASSES.get(model)
    if cls is None:
        cls = _EVENT_CLASSES[model] = CloudEvent[Any] if model is None else CloudEvent[model]  # type: ignore[valid-type]
    return cls


def traceparent_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The W3C `traceparent` header when present and well-formed (an invalid one is ignored, as W3C asks)."""
    for name, raw in headers or ():  # the first one with a value, as `_headers` reads them (no dict built)
        if raw is None or name.lower() != HEADER_TRACEPARENT:
            continue
        value = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        return value if _TRACEPARENT.fullmatch(value) else None
    return None


def _headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, raw in headers or ():
        if raw is None:  # a Kafka header may carry no value
            continue
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        result.setdefault(name.lower(), text)
    return result


def field_path(loc: Sequence[int | str]) -> str:
    """`("data", "job", "tasks", 0, "task_key")` -> `data.job.tasks[0].task_key`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += "[key]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _describe(error: ErrorDetails) -> str:
    message = error["msg"]
    if error["type"] == "missing":
        return "required field is missing"
    return message.removeprefix("Value error, ")


def _contract_error(
    exc: ValidationError, default: type[ContractError], *, envelope_only: bool = False
) -> ContractError:
    """The first validation error as a ContractError naming its field: `data...` -> InvalidPayload, an envelope
    attribute (or everything, with `envelope_only`) -> `default`."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = field_path(first["loc"])
    if isinstance(first.get("ctx", {}).get("error"), _TenantMismatch):
        path = "data.tenant_id"
    reason = _describe(first)
    if len(errors) > 1:
        reason += (
            f" (and {len(errors) - 1} more: "
            + "; ".join(f"{field_path(e['loc']) or '<event>'}: {_describe(e)}" for e in errors[1:4])
            + ")"
        )
    cls = InvalidPayload if first["loc"][:1] == ("data",) and not envelope_only else default
    return cls(reason, field=path or None)
