"""Simulator control under ``/__admin`` (outside ``/api/``, like the local workspace's), admin key required:
ticks, faults, per-route counters, webhook delivery log. ``/__admin/sink/{name}`` is an unauthenticated
webhook receiver that records what is posted to it (so tests and demos need no server of their own)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from apev_mcpsim.auth import admin_caller
from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.faults import ADMIN_PREFIX, FaultAction, Faults
from apev_mcpsim.models import Backend
from apev_mcpsim.webhooks import Dispatcher

router = APIRouter(prefix=ADMIN_PREFIX, dependencies=[Depends(admin_caller)])
sink_router = APIRouter(prefix=f"{ADMIN_PREFIX}/sink")


class TickIn(BaseModel):
    tenant_code: str | None = None
    entity_types: list[str] | None = None
    ratio: float | None = Field(default=None, ge=0, le=1)


class FaultIn(BaseModel):
    path: str = Field(min_length=1)
    method: str = "*"
    action: FaultAction = "429"
    count: int | None = Field(default=None, ge=1)
    ratio: float = Field(default=1.0, ge=0, le=1)
    retry_after: int | None = Field(default=None, ge=0)
    latency_ms: int = Field(default=0, ge=0)
    status: int = Field(default=500, ge=400, le=599)


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


@router.post("/tick")
async def tick(body: TickIn, request: Request) -> dict[str, Any]:
    """Change a share of records (default ``tick_ratio``) of one tenant, or of every tenant with data."""
    return _backend(request).tick(body.tenant_code, body.entity_types, body.ratio)


@router.get("/faults")
async def list_faults(request: Request) -> dict[str, Any]:
    return {"faults": [f.view() for f in _faults(request).faults]}


@router.post("/faults")
async def add_fault(body: FaultIn | list[FaultIn], request: Request) -> Any:
    def add(spec: FaultIn) -> dict[str, Any]:
        values = spec.model_dump()
        if values["retry_after"] is None and spec.action == "429":
            values["retry_after"] = 1
        return _faults(request).add(**values).view()

    return [add(spec) for spec in body] if isinstance(body, list) else add(body)


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, Any]:
    _faults(request).clear()
    return {}


@router.delete("/faults/{fault_id}")
async def remove_fault(fault_id: int, request: Request) -> dict[str, Any]:
    if not _faults(request).remove(fault_id):
        raise McpSimError(404, f"Fault rule {fault_id} not found")
    return {}


@router.get("/counters")
async def counters(request: Request, prefix: str | None = None) -> dict[str, Any]:
    """Requests per ``METHOD route-template``; ``prefix`` filters on the route."""
    counts = dict(sorted(_faults(request).counters.items()))
    if prefix:
        counts = {k: v for k, v in counts.items() if k.split(" ", 1)[1].startswith(prefix)}
    return {"counters": counts, "total": sum(counts.values())}


@router.delete("/counters")
async def reset_counters(request: Request) -> dict[str, Any]:
    _faults(request).counters.clear()
    return {}


@router.get("/webhooks/deliveries")
async def deliveries(request: Request) -> list[dict[str, Any]]:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher.deliveries


@sink_router.post("/{name}")
async def sink_post(name: str, request: Request) -> dict[str, Any]:
    sinks: dict[str, list[dict[str, Any]]] = request.app.state.sinks
    entry = {"headers": dict(request.headers), "body": (await request.body()).decode()}
    sinks.setdefault(name, []).append(entry)
    return {"received": len(sinks[name])}


@sink_router.get("/{name}")
async def sink_get(name: str, request: Request) -> list[dict[str, Any]]:
    sinks: dict[str, list[dict[str, Any]]] = request.app.state.sinks
    return sinks.get(name, [])
