"""Slack interactivity: a click on a message's button becomes a signed `block_actions` request to the app's
Request URL, and the payload's `response_url` accepts updates of that message (5 uses within 30 minutes).

    configure(request_url, signing_secret)        what the Slack app's "Interactivity" settings hold
    build_click(message, action_id, user, ...)    the form body and signed headers Slack would send
    respond(token, body)                          a POST to a response_url: recorded against its message

No HTTP here (the admin route sends the request); signatures are Slack's v0 scheme:
`v0=` + hex HMAC-SHA256(signing secret, `v0:{X-Slack-Request-Timestamp}:{raw body}`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from apev_sinks.clock import Clock
from apev_sinks.slack.models import SlackMessage

TEAM_ID = "T0APEV0000"
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60


class InteractionError(Exception):
    """A click or a response the stand-in cannot carry out; `status` is the admin route's answer."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Click:
    """What Slack sends for one click: the raw form body and its headers."""

    url: str
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class ResponseUrl:
    token: str
    message_id: int
    created: float
    uses: int = 0


@dataclass(frozen=True)
class MessageUpdate:
    id: int
    message_id: int
    token: str
    body: dict[str, Any]
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "text": self.body.get("text"),
            "blocks": self.body.get("blocks"),
            "replace_original": self.body.get("replace_original"),
            "body": self.body,
            "received_at": self.received_at.isoformat(),
        }


@dataclass
class Interactivity:
    clock: Clock
    request_url: str | None = None
    signing_secret: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _urls: dict[str, ResponseUrl] = field(default_factory=dict, repr=False)
    _updates: list[MessageUpdate] = field(default_factory=list, repr=False)
    clicks: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def configure(self, request_url: str, signing_secret: str) -> None:
        if not request_url.startswith(("http://", "https://")):
            raise ValueError(f"request_url must be an http(s) URL, got {request_url!r}")
        if len(signing_secret) < 8:
            raise ValueError("signing_secret must be at least 8 characters")
        with self._lock:
            self.request_url, self.signing_secret = request_url, signing_secret

    def settings(self) -> dict[str, Any]:
        return {"request_url": self.request_url, "signing_secret_set": self.signing_secret is not None}

    def build_click(
        self,
        message: SlackMessage,
        action_id: str,
        *,
        user_id: str,
        user_name: str | None,
        response_base: str,
        signature: str = "valid",
        timestamp_offset: int = 0,
    ) -> Click:
        """The signed `block_actions` request for a click on the button `action_id` of `message`.

        `signature` "forged" signs with another secret, "missing" sends none; `timestamp_offset` (seconds,
        negative = in the past) makes a stale request."""
        if self.request_url is None or self.signing_secret is None:
            raise InteractionError(409, "interactivity_off", "configure a request_url and signing_secret first")
        block_id, button = _find_button(message, action_id)
        token = secrets.token_hex(12)
        with self._lock:
            self._urls[token] = ResponseUrl(token, message.id, self.clock.monotonic())
        now = self.clock.now()
        ts = f"{now.timestamp():.6f}"
        payload: dict[str, Any] = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "apev-local"},
            "user": {"id": user_id, "username": user_name or user_id, "name": user_name or user_id, "team_id": TEAM_ID},
            "api_app_id": "A0APEVLOCAL",
            "container": {"type": "message", "message_ts": ts, "channel_id": "C0APEVAPPR", "is_ephemeral": False},
            "trigger_id": f"{message.id}.{secrets.token_hex(6)}",
            "channel": {"id": "C0APEVAPPR", "name": message.channel.lstrip("#")},
            "message": {"type": "message", "ts": ts, "text": message.text, "blocks": message.blocks},
            "response_url": f"{response_base.rstrip('/')}/actions/{TEAM_ID}/{message.id}/{token}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": block_id,
                    "value": button.get("value"),
                    "text": button.get("text"),
                    "style": button.get("style"),
                    "action_ts": ts,
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        timestamp = str(int(now.timestamp()) + timestamp_offset)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp}
        if signature == "valid":
            headers["X-Slack-Signature"] = sign(self.signing_secret, timestamp, body)
        elif signature == "forged":
            headers["X-Slack-Signature"] = sign("not-the-signing-secret", timestamp, body)
        elif signature != "missing":
            raise InteractionError(400, "bad_request", f"signature must be valid, forged or missing, got {signature!r}")
        with self._lock:
            self.clicks.append({"message_id": message.id, "action_id": action_id, "user_id": user_id, "at": ts})
        return Click(self.request_url, body, headers, payload)

    def respond(self, token: str, body: dict[str, Any]) -> MessageUpdate:
        with self._lock:
            url = self._urls.get(token)
            if url is None:
                raise InteractionError(404, "no_such_url", "this response_url was never handed out")
            if self.clock.monotonic() - url.created > RESPONSE_URL_TTL_SECONDS:
                raise InteractionError(404, "expired_url", "response_url is valid for 30 minutes")
            if url.uses >= RESPONSE_URL_USES:
                raise InteractionError(404, "used_url", f"response_url may be used {RESPONSE_URL_USES} times")
            url.uses += 1
            update = MessageUpdate(next(self._ids), url.message_id, token, body, self.clock.now())
            self._updates.append(update)
            return update

    def updates(self, message_id: int | None = None) -> list[MessageUpdate]:
        with self._lock:
            return [u for u in self._updates if message_id is None or u.message_id == message_id]

    def reset(self) -> None:
        """Forget clicks, response URLs and updates; keep the app's settings."""
        with self._lock:
            self._urls.clear()
            self._updates.clear()
            self.clicks.clear()


def _find_button(message: SlackMessage, action_id: str) -> tuple[str | None, dict[str, Any]]:
    found: list[str] = []
    for block in message.blocks or []:
        if not isinstance(block, dict) or block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "button":
                found.append(str(element.get("action_id")))
                if element.get("action_id") == action_id:
                    return block.get("block_id"), element
    raise InteractionError(
        404, "no_such_button", f"message {message.id} has no button {action_id!r} (buttons: {found or 'none'})"
    )
