"""PagerDuty's HTTP side: `POST /v2/enqueue`, and admin routes for routing keys, events and incidents."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from apev_sinks.pagerduty.exceptions import PagerDutyError
from apev_sinks.pagerduty.models import PagerDutyBackend


class RoutingKeyIn(BaseModel):
    routing_key: str
    service: str | None = None


def api_router(pagerduty: PagerDutyBackend) -> APIRouter:
    router = APIRouter()

    @router.post("/v2/enqueue")
    async def enqueue(request: Request) -> JSONResponse:
        try:
            event = pagerduty.enqueue_bytes(await request.body())
        except PagerDutyError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": event.dedup_key}, status_code=202
        )

    return router


def admin_router(pagerduty: PagerDutyBackend) -> APIRouter:
    router = APIRouter(prefix="/_admin/pagerduty")

    @router.get("/routing-keys")
    async def list_keys() -> list[dict[str, str]]:
        return [{"routing_key": k, "service": s} for k, s in pagerduty.routing_keys().items()]

    @router.post("/routing-keys", status_code=201)
    async def register_key(body: RoutingKeyIn) -> dict[str, str]:
        try:
            pagerduty.register(body.routing_key, body.service)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"routing_key": body.routing_key, "service": pagerduty.routing_keys()[body.routing_key]}

    @router.get("/events")
    async def list_events(dedup_key: str | None = None) -> list[dict[str, Any]]:
        return [e.to_dict() for e in pagerduty.events(dedup_key=dedup_key)]

    @router.get("/incidents")
    async def list_incidents(
        dedup_key: str | None = None, status: str | None = None, routing_key: str | None = None
    ) -> list[dict[str, Any]]:
        found = pagerduty.incidents(dedup_key=dedup_key, status=status, routing_key=routing_key)
        return [i.to_dict() for i in found]

    @router.get("/incidents/{incident_id}")
    async def get_incident(incident_id: str) -> dict[str, Any]:
        incident = pagerduty.incident(incident_id)
        if incident is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return incident.to_dict()

    return router
