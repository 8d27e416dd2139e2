"""Slack's HTTP side: the incoming-webhook route, and the admin routes to read and register webhooks."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from apev_sinks.slack.exceptions import RateLimitedError, SlackError
from apev_sinks.slack.interactivity import InteractionError
from apev_sinks.slack.models import SlackBackend


class WebhookIn(BaseModel):
    path: str
    channel: str | None = None
    archived: bool = False


class InteractivityIn(BaseModel):
    request_url: str
    signing_secret: str


class ClickIn(BaseModel):
    action_id: str
    user_id: str = Field(description="the Slack user who clicks, e.g. U024BE7LH")
    user_name: str | None = None
    signature: Literal["valid", "forged", "missing"] = "valid"
    timestamp_offset: int = Field(0, description="seconds added to X-Slack-Request-Timestamp (-400: stale)")


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

    @router.post("/actions/{team}/{message_id}/{token}")
    async def response_url(team: str, message_id: int, token: str, request: Request) -> Response:
        """A message's `response_url`: the app updates (or replaces) the message it came from."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_json"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        try:
            slack.interactivity.respond(token, body)
        except InteractionError as exc:
            return JSONResponse({"ok": False, "error": exc.error}, status_code=exc.status)
        return JSONResponse({"ok": True})

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

    @router.get("/interactivity")
    async def get_interactivity() -> dict[str, Any]:
        return slack.interactivity.settings()

    @router.put("/interactivity")
    async def set_interactivity(body: InteractivityIn) -> dict[str, Any]:
        """Where clicks go and the secret they are signed with (the Slack app's interactivity settings)."""
        try:
            slack.interactivity.configure(body.request_url, body.signing_secret)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return slack.interactivity.settings()

    @router.post("/messages/{message_id}/click")
    async def click(message_id: int, body: ClickIn, request: Request) -> Response:
        """Click a button as `user_id`: the signed `block_actions` request is sent to the Request URL; the
        answer (status, body, time taken) is returned. Slack itself gives an app 3 s to answer."""
        message = slack.message(message_id)
        if message is None:
            return JSONResponse({"error": "no_such_message", "detail": f"no message {message_id}"}, status_code=404)
        try:
            sent = slack.interactivity.build_click(
                message,
                body.action_id,
                user_id=body.user_id,
                user_name=body.user_name,
                response_base=str(request.base_url),
                signature=body.signature,
                timestamp_offset=body.timestamp_offset,
            )
        except InteractionError as exc:
            return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status)
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.post(sent.url, content=sent.body, headers=sent.headers)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": "request_failed", "detail": repr(exc)}, status_code=502)
        return JSONResponse(
            {
                "status": answer.status_code,
                "body": answer.text[:2000],
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
                "response_url": sent.payload["response_url"],
            }
        )

    @router.get("/updates")
    async def list_updates(message_id: int | None = None) -> list[dict[str, Any]]:
        """What apps posted to response URLs, oldest first."""
        return [u.to_dict() for u in slack.interactivity.updates(message_id)]

    @router.get("/rejections")
    async def list_rejections(webhook: str | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in slack.rejections(webhook)]

    return router
