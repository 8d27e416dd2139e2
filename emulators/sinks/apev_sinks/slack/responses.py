"""Slack's HTTP side: the incoming-webhook route, and the admin routes to read and register webhooks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from apev_sinks.slack.exceptions import RateLimitedError, SlackError
from apev_sinks.slack.models import SlackBackend


class WebhookIn(BaseModel):
    path: str
    channel: str | None = None
    archived: bool = False


def api_router(slack: SlackBackend) -> APIRouter:
    router = APIRouter()

    @router.post("/services/{path:path}")
    async def post_message(path: str, request: Request) -> Response:
        body = await request.body()
        try:
            slack.post(path, body, request.headers.get("content-type", "application/json"))
        except RateLimitedError as exc:
            return PlainTextResponse(exc.code, status_code=exc.status, headers={"Retry-After": str(exc.retry_after)})
        except SlackError as exc:
            return PlainTextResponse(exc.code, status_code=exc.status)
        return PlainTextResponse("ok")

    return router


def admin_router(slack: SlackBackend) -> APIRouter:
    router = APIRouter(prefix="/_admin/slack")

    @router.get("/webhooks")
    async def list_webhooks() -> list[dict[str, Any]]:
        return [h.to_dict() for h in slack.webhooks()]

    @router.post("/webhooks", status_code=201)
    async def register_webhook(body: WebhookIn) -> dict[str, Any]:
        try:
            return slack.register(body.path, body.channel, archived=body.archived).to_dict()
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    @router.get("/messages")
    async def list_messages(webhook: str | None = None) -> list[dict[str, Any]]:
        return [m.to_dict() for m in slack.messages(webhook)]

    @router.get("/rejections")
    async def list_rejections(webhook: str | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in slack.rejections(webhook)]

    return router
