"""The operator's commands behind `python -m apev_stack` (publish, tail, dlq, show, health, token).

Each finds the running stack by its state file (`apev_stack.state`), or takes what the environment sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from apev_contracts.envelope import decode, encode, new_event
from apev_contracts.errors import ContractError
from apev_contracts.registry import spec_for_topic, spec_for_type
from apev_contracts.topics import all_topics
from apev_runtime.auth import mint_token

console = Console(highlight=False)

COLORS = {
    "datasource.created": "cyan",
    "job.requested": "blue",
    "run.finished": "green",
    "insight.created": "magenta",
    "cost.sampled": "yellow",
    "writeback.outcome": "bright_magenta",
}


def build_event(
    topic_or_type: str, data: dict[str, Any], *, tenant: str | None, source: str, event_id: str | None = None
) -> Any:
    """A CloudEvent for `data`, validated by the contracts (raises ContractError / pydantic errors)."""
    spec = spec_for_type(topic_or_type) if topic_or_type.startswith("com.") else spec_for_topic(topic_or_type)
    tenant_id = tenant or data.get("tenant_id")
    if not tenant_id:
        raise ContractError("give --tenant or a tenant_id in the data", field="tenant_id")
    data.setdefault("tenant_id", tenant_id)
    payload = spec.model.model_validate(data)
    kw: dict[str, Any] = {"id": event_id} if event_id else {}
    return new_event(payload, tenant_id=str(tenant_id), source=source, **kw)


def load_event_file(path: Path) -> tuple[str | None, dict[str, Any]]:
    """A JSON file holding either a full CloudEvent (its `type` and `data`) or only the data."""
    body = json.loads(path.read_text())
    if not isinstance(body, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if "specversion" in body:
        return str(body.get("type")), dict(body.get("data") or {})
    return None, body


async def publish(bootstrap: str, prefix: str, event: Any) -> tuple[str, int, int]:
    record = encode(event)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(prefix + record.topic, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()
    return prefix + record.topic, meta.partition, meta.offset


def format_event(
    topic: str, partition: int, offset: int, value: bytes, headers: list[tuple[str, bytes]], prefix: str = ""
) -> str:
    base = topic.removeprefix(prefix)
    color = COLORS.get(base.removesuffix(".dlq"), "white")
    try:
        ev = decode(value, headers, topic=base)
        data = ev.data.model_dump(mode="json", exclude_none=True)
        brief = ", ".join(f"{k}={v}" for k, v in data.items() if k != "tenant_id" and not isinstance(v, dict | list))
        return f"[{color}]{base:<24}[/] [dim]{partition}@{offset}[/] tenant={ev.tenantid} id={ev.id[:8]} {brief[:160]}"
    except Exception as exc:
        return f"[{color}]{base:<24}[/] [dim]{partition}@{offset}[/] [red]undecodable[/] {type(exc).__name__}"


def event_matches(value: bytes, headers: list[tuple[str, bytes]], tenant: str | None, type_: str | None) -> bool:
    if not tenant and not type_:
        return True
    try:
        raw = json.loads(value)
    except ValueError:
        return False
    if tenant and raw.get("tenantid") != tenant:
        return False
    return not (type_ and type_ not in str(raw.get("type", "")))


async def tail_events(
    bootstrap: str,
    prefix: str,
    *,
    topics: list[str] | None = None,
    tenant: str | None = None,
    type_: str | None = None,
    from_beginning: bool = False,
    limit: int | None = None,
    stopping: threading.Event | None = None,
    out: Callable[[str], None] | None = None,
) -> int:
    """Print events as they arrive (no consumer group: nothing is committed, no service is disturbed)."""
    names = [prefix + t for t in (topics or all_topics())]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )  # fmt: skip
    await consumer.start()
    seen = 0
    emit = out or (lambda line: console.print(line, soft_wrap=True))
    try:
        consumer.subscribe(names)
        while not (stopping and stopping.is_set()):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    headers = list(r.headers or ())
                    if event_matches(r.value or b"", headers, tenant, type_):
                        emit(format_event(r.topic, r.partition, r.offset, r.value or b"", headers, prefix))
                        seen += 1
                        if limit and seen >= limit:
                            return seen
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return seen


def dev_token(secret: str, tenant: str, roles: list[str], ttl: int = 3600, subject: str = "operator") -> str:
    return mint_token(secret, tenant_id=tenant, roles=roles, subject=subject, ttl_seconds=ttl)


def get_json(url: str, token: str | None = None, params: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    got = httpx.get(url, headers=headers, params=params, timeout=15)
    try:
        return got.status_code, got.json()
    except ValueError:
        return got.status_code, got.text


async def health(urls: dict[str, str], bootstrap: str) -> list[tuple[str, bool, str]]:
    """Every part's answer: services' /readyz, stand-ins' own health routes, Kafka metadata."""
    from apev_stack.kafka import wait_ready

    probes = {
        "workspace": "/.well-known/databricks-config",
        "mcp": "/health",
        "sinks": "/_admin/requests",
    }
    out: list[tuple[str, bool, str]] = []
    try:
        await wait_ready(bootstrap, timeout=5)
        out.append(("kafka", True, bootstrap))
    except Exception as exc:
        out.append(("kafka", False, f"{bootstrap}: {exc}"[:200]))
    async with httpx.AsyncClient(timeout=5) as http:
        for part, base in urls.items():
            if part == "smtp":
                continue
            path = probes.get(part, "/readyz")
            try:
                got = await http.get(base + path)
                detail = got.text[:160] if path == "/readyz" else f"HTTP {got.status_code}"
                out.append((part, got.status_code < 400 or (part == "workspace" and got.status_code == 404), detail))
            except httpx.HTTPError as exc:
                out.append((part, False, f"{base}: {type(exc).__name__}"))
    return out


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def request_json(
    method: str, url: str, token: str | None = None, body: Any = None, params: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One call to a service's API: (status, the JSON body, or the text when it is not JSON)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    got = httpx.request(method, url, headers=headers, json=body, params=params, timeout=30)
    try:
        return got.status_code, got.json()
    except ValueError:
        return got.status_code, got.text
