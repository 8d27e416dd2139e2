"""The AsyncAPI 3.0 document of one service, from what its broker really has registered.

    doc = asyncapi.document(runtime)        # the subscribers on runtime.broker + runtime.publishes
    asyncapi.render(doc)                    # stable JSON text (what docs/asyncapi/<service>.json holds)
    asyncapi.problems(doc)                  # structural check against AsyncAPI 3.0 ([] when valid)

FastStream's own generator sees only the delivery kit's internal batch function, so this one reads the
runtime's `Subscription`s (topics, group id, handler name, `CloudEvent[Model]` payload) and the service's
table of published event models, and takes payload schemas from the contracts (envelope and `data`, the same
JSON Schemas as `contracts/schemas/`). Each subscribed topic also gets its `.dlq` twin as a sent channel.
Served by every service at `GET /asyncapi.json`; `make asyncapi` writes the committed copies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

from apev_contracts.envelope import CONTENT_TYPE, HEADER_CE_TYPE, HEADER_CONTENT_TYPE, HEADER_TRACEPARENT
from apev_contracts.registry import EventSpec, spec_for_model, spec_for_topic
from apev_contracts.schemas import schema_for
from apev_contracts.topics import dlq_topic

if TYPE_CHECKING:
    from apev_runtime.app import Runtime

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
SERVER: Final = "kafka"


@dataclass(frozen=True)
class Received:
    """One subscriber: what it reads, in which group, with which handler."""

    topic: str
    group_id: str
    handler: str
    spec: EventSpec
    outside_calls: bool = False


def received(runtime: Runtime) -> list[Received]:
    """The subscriptions registered on the runtime's broker, one entry per topic."""
    out: list[Received] = []
    for sub in getattr(runtime.broker, "subscriptions", []):
        for topic in sub.topics:
            spec = spec_for_topic(topic)
            if sub.payload_model is not None and sub.payload_model is not spec.model:
                raise TypeError(
                    f"{sub.handler_name} takes CloudEvent[{sub.payload_model.__name__}] but {topic!r} carries "
                    f"{spec.model.__name__}"
                )
            out.append(Received(topic, sub.group_id, sub.handler_name or "handler", spec, sub.outside_calls))
    return out


def document(runtime: Runtime, *, version: str | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the service `runtime` runs."""
    settings = runtime.settings
    return build(
        service=settings.service_name,
        version=version or _version(settings.service_name),
        receives=received(runtime),
        publishes=runtime.publishes,
        topic_prefix=settings.kafka_topic_prefix,
    )


def build(
    *,
    service: str,
    version: str,
    receives: Sequence[Received],
    publishes: Iterable[type[BaseModel]],
    topic_prefix: str = "",
) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    def channel(topic: str, spec: EventSpec, *, dlq: bool = False) -> str:
        cid = _id(topic)
        if cid not in channels:
            _add_message(spec, messages, schemas)
            name = spec.model.__name__
            channels[cid] = {
                "address": topic,
                "title": topic,
                "description": (
                    f"Dead letters of `{spec.topic}`: the original record (value, key and headers kept) plus "
                    "`x-apev-dlq-*` headers saying why."
                    if dlq
                    else f"`{spec.type}` events ({name})."
                ),
                "messages": {name: {"$ref": f"#/components/messages/{spec.type}"}},
            }
        return cid

    def operation(oid: str, body: dict[str, Any]) -> None:
        base, n = oid, 2
        while oid in operations:
            oid, n = f"{base}_{n}", n + 1
        operations[oid] = body

    def ref(cid: str, spec: EventSpec) -> dict[str, Any]:
        return {
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{spec.model.__name__}"}],
        }

    for r in receives:
        cid = channel(r.topic, r.spec)
        how = "one event at a time, each step committed before its outside call" if r.outside_calls else "in batches"
        operation(
            r.handler,
            {
                "action": "receive",
                **ref(cid, r.spec),
                "summary": f"`{r.handler}` handles `{r.topic}` in consumer group `{r.group_id}` ({how}).",
                "description": "At-least-once: inbox-deduplicated by event id, retried, then dead-lettered to "
                f"`{dlq_topic(r.topic)}`.",
                "bindings": {"kafka": {"groupId": _const(r.group_id), "bindingVersion": KAFKA_BINDING_VERSION}},
            },
        )
    for topic, spec in sorted({(r.topic, r.spec) for r in receives}, key=lambda t: t[0]):
        cid = channel(dlq_topic(topic), spec, dlq=True)
        operation(
            f"dead_letter_{_id(topic)}",
            {
                "action": "send",
                **ref(cid, spec),
                "summary": f"`{topic}` events that failed permanently or ran out of retries.",
            },
        )
    for model in publishes:
        spec = spec_for_model(model)
        cid = channel(spec.topic, spec)
        operation(
            f"publish_{cid}",
            {
                "action": "send",
                **ref(cid, spec),
                "summary": f"`{spec.type}` through the transactional outbox (idempotent producer, acks=all).",
            },
        )
    description = (
        f"Kafka events the `{service}` service consumes and publishes. Values are CloudEvents 1.0 in structured "
        f"mode (`{CONTENT_TYPE}`); the key is the tenant id. Generated from the subscribers registered on its "
        "broker and the contracts' JSON Schemas (`make asyncapi`)."
    )
    if topic_prefix:
        description += f" Every address carries the topic prefix `{topic_prefix}` on this deployment."
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:agentprovision:apev:{service}",
        "info": {"title": f"apev-{service}", "version": version, "description": description},
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            SERVER: {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster (`KAFKA_BOOTSTRAP_SERVERS`).",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": dict(sorted(schemas.items()))},
    }


def _add_message(spec: EventSpec, messages: dict[str, Any], schemas: dict[str, Any]) -> None:
    if spec.type in messages:
        return
    schema = schema_for(spec.type, spec.model)
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    defs = schema.pop("$defs", {})
    for name, sub in [*defs.items(), (spec.type, schema)]:
        sub = _rehome(sub)
        if schemas.setdefault(name, sub) != sub:
            raise ValueError(f"two different JSON Schemas are both named {name!r}")
    doc = (spec.model.__doc__ or "").strip()
    messages[spec.type] = {
        "name": spec.model.__name__,
        "title": spec.type,
        **({"summary": doc.splitlines()[0]} if doc else {}),
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                HEADER_CONTENT_TYPE: _const(CONTENT_TYPE),
                HEADER_CE_TYPE: _const(spec.type),
                HEADER_TRACEPARENT: {"type": "string", "description": "W3C trace context, when the sender had one"},
            },
            "required": [HEADER_CONTENT_TYPE, HEADER_CE_TYPE],
        },
        "payload": {"$ref": f"#/components/schemas/{spec.type}"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "the tenant id (one tenant's events stay in order)"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _rehome(node: Any) -> Any:
    """pydantic's `#/$defs/X` references -> `#/components/schemas/X`."""
    if isinstance(node, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/", 1) if k == "$ref" and isinstance(v, str) else _rehome(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rehome(v) for v in node]
    return node


def _const(value: str) -> dict[str, Any]:
    return {"type": "string", "const": value}


def _id(topic: str) -> str:
    return topic.replace(".", "_")


def _version(service: str) -> str:
    try:
        return metadata.version(f"apev-{service}")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def render(doc: dict[str, Any]) -> str:
    """Stable JSON text, key order as built."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------- validation

_COMPONENT_KEY: Final = r"^[a-zA-Z0-9\.\-_]+$"
_REQUIRED: Final = {
    "info": ("title", "version"),
    "server": ("host", "protocol"),
    "operation": ("action", "channel"),
}


def problems(doc: dict[str, Any]) -> list[str]:
    """What keeps `doc` from being a structurally valid AsyncAPI 3.0 document (required keys, allowed values,
    every `$ref` resolving, operations' messages belonging to their channel); [] when none."""
    out: list[str] = []
    if doc.get("asyncapi") != ASYNCAPI_VERSION:
        out.append(f"asyncapi must be {ASYNCAPI_VERSION!r}, not {doc.get('asyncapi')!r}")
    allowed = {"asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations", "components"}
    out += [f"unknown top-level field {k!r}" for k in doc if k not in allowed]
    info = doc.get("info")
    if not isinstance(info, dict):
        out.append("info is required")
    else:
        out += [f"info.{k} is required" for k in _REQUIRED["info"] if not isinstance(info.get(k), str)]
    for name, server in (doc.get("servers") or {}).items():
        out += [f"servers.{name}.{k} is required" for k in _REQUIRED["server"] if not isinstance(server.get(k), str)]
    for cid, ch in (doc.get("channels") or {}).items():
        if not re.fullmatch(r"^[A-Za-z0-9_\-]+$", cid):
            out.append(f"channel id {cid!r} has characters AsyncAPI does not allow")
        if "address" in ch and not (ch["address"] is None or isinstance(ch["address"], str)):
            out.append(f"channels.{cid}.address must be a string or null")
        for mid in ch.get("messages") or {}:
            if not re.fullmatch(r"^[A-Za-z0-9_\-]+$", mid):
                out.append(f"message id {mid!r} of channel {cid!r} has characters AsyncAPI does not allow")
    for oid, op in (doc.get("operations") or {}).items():
        out += [f"operations.{oid}.{k} is required" for k in _REQUIRED["operation"] if k not in op]
        if op.get("action") not in ("send", "receive"):
            out.append(f"operations.{oid}.action must be send or receive")
        channel_ref = (op.get("channel") or {}).get("$ref", "")
        for m in op.get("messages") or []:
            if not str(m.get("$ref", "")).startswith(channel_ref + "/messages/"):
                out.append(f"operations.{oid}: message {m.get('$ref')!r} is not one of its channel's")
    for kind, entries in (doc.get("components") or {}).items():
        out += [f"components.{kind} key {k!r} is not allowed" for k in entries if not re.fullmatch(_COMPONENT_KEY, k)]
    out += [f"$ref {r!r} does not resolve" for r in sorted(set(_refs(doc))) if _resolve(doc, r) is None]
    return out


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
