"""Admin routes shared by the three stand-ins: overview, faults, request counters, limits, reset."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from apev_sinks.backend import Sinks
from apev_sinks.faults import FaultRule, FaultSpec


class FaultIn(BaseModel):
    match: str
    status: int | None = None
    latency: float = 0.0
    count: int | None = None
    ratio: float = 1.0
    retry_after: int | None = None
    body: str | None = None
    after_apply: bool = False


class LimitsIn(BaseModel):
    slack_min_interval: float | None = None
    pagerduty_rate_limit: int | None = None
    pagerduty_rate_window: float | None = None


def limits(sinks: Sinks) -> dict[str, Any]:
    return {
        "slack_min_interval": sinks.slack.min_interval,
        "pagerduty_rate_limit": sinks.pagerduty.rate_limit,
        "pagerduty_rate_window": sinks.pagerduty.rate_window,
    }


def admin_router(sinks: Sinks) -> APIRouter:
    router = APIRouter(prefix="/_admin")

    @router.get("")
    async def overview(request: Request) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        smtp = getattr(request.app.state, "smtp", None)
        return {
            "slack": {
                "webhooks": [{**h.to_dict(), "url": f"{base}/services/{h.path}"} for h in sinks.slack.webhooks()]
            },
            "pagerduty": {
                "events_url": f"{base}/v2/enqueue",
                "routing_keys": sinks.pagerduty.routing_keys(),
            },
            "smtp": {"host": smtp[0], "port": smtp[1]} if smtp else None,
            "limits": limits(sinks),
            "faults": [r.to_dict() for r in sinks.faults.rules()],
        }

    @router.get("/faults")
    async def list_faults() -> list[dict[str, Any]]:
        return [r.to_dict() for r in sinks.faults.rules()]

    @router.post("/faults", status_code=201)
    async def add_fault(body: FaultIn) -> dict[str, Any]:
        try:
            spec = FaultSpec(**body.model_dump())
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return sinks.faults.add(spec).to_dict()

    @router.delete("/faults/{fault_id}", status_code=204)
    async def remove_fault(fault_id: str) -> None:
        if not sinks.faults.remove(fault_id):
            raise HTTPException(404, f"no fault {fault_id}")

    @router.delete("/faults", status_code=204)
    async def clear_faults() -> None:
        sinks.faults.clear()

    @router.get("/requests")
    async def request_counters() -> dict[str, Any]:
        return sinks.counters.snapshot()

    @router.get("/limits")
    async def get_limits() -> dict[str, Any]:
        return limits(sinks)

    @router.patch("/limits")
    async def set_limits(body: LimitsIn) -> dict[str, Any]:
        if body.slack_min_interval is not None:
            if body.slack_min_interval < 0:
                raise HTTPException(400, "slack_min_interval must be >= 0 seconds")
            sinks.slack.min_interval = body.slack_min_interval
        if body.pagerduty_rate_limit is not None:
            if body.pagerduty_rate_limit < 1:
                raise HTTPException(400, "pagerduty_rate_limit must be >= 1 event")
            sinks.pagerduty.rate_limit = body.pagerduty_rate_limit
        if body.pagerduty_rate_window is not None:
            if body.pagerduty_rate_window <= 0:
                raise HTTPException(400, "pagerduty_rate_window must be > 0 seconds")
            sinks.pagerduty.rate_window = body.pagerduty_rate_window
        return limits(sinks)

    @router.post("/reset", status_code=204)
    async def reset() -> None:
        sinks.reset()

    return router


FAULTS_PREFIX = "/__admin"
ACTIONS = ("429", "503", "error", "latency", "lost_response")


class SharedFaultIn(BaseModel):
    """The rule shape of the workspace's and the MCP simulator's `/__admin/faults`."""

    path: str
    method: str = "*"
    action: Literal["429", "503", "error", "latency", "lost_response"] = "429"
    count: int | None = None
    ratio: float = 1.0
    retry_after: int | None = None
    latency_ms: int = 0
    status: int = 500


def _spec_of(rule: SharedFaultIn) -> FaultSpec:
    """`lost_response`: the sinks cannot drop a connection, so the request is applied and answered with 502
    (the caller sees a failure after the effect, which is what a lost response tests)."""
    status: int | None
    if rule.action == "latency":
        status = None
    elif rule.action == "lost_response":
        status = 502
    elif rule.action == "error":
        status = rule.status
    else:
        status = int(rule.action)
    return FaultSpec(
        match=rule.path,
        status=status,
        latency=rule.latency_ms / 1000,
        count=rule.count,
        ratio=rule.ratio,
        retry_after=rule.retry_after,
        after_apply=rule.action == "lost_response",
        method=rule.method.upper(),
        action=rule.action,
    )


def _shared_view(rule: FaultRule) -> dict[str, Any]:
    s = rule.spec
    action = s.action or ("latency" if s.status is None else str(s.status) if s.status in (429, 503) else "error")
    return {
        "id": rule.id,
        "path": s.match,
        "method": s.method,
        "action": action,
        "count": rule.remaining,
        "ratio": s.ratio,
        "retry_after": s.retry_after,
        "latency_ms": round(s.latency * 1000),
        "status": s.status or 500,
        "fired": rule.hits,
    }


def faults_router(sinks: Sinks) -> APIRouter:
    """`/__admin/faults`: the same rules as `/_admin/faults` (one table), in the shape shared by the stand-ins."""
    router = APIRouter(prefix=FAULTS_PREFIX)

    @router.get("/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [_shared_view(r) for r in sinks.faults.rules()]}

    @router.post("/faults")
    async def add_fault(body: SharedFaultIn | list[SharedFaultIn]) -> Any:
        try:
            specs = [_spec_of(rule) for rule in (body if isinstance(body, list) else [body])]
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        views = [_shared_view(sinks.faults.add(spec)) for spec in specs]
        return views if isinstance(body, list) else views[0]

    @router.delete("/faults")
    async def clear_faults() -> dict[str, Any]:
        sinks.faults.clear()
        return {}

    @router.delete("/faults/{fault_id}")
    async def remove_fault(fault_id: str) -> dict[str, Any]:
        if not sinks.faults.remove(fault_id):
            raise HTTPException(404, f"no fault {fault_id}")
        return {}

    return router
