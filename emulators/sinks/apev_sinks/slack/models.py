"""The Slack backend: known webhooks, the messages they received, one message per interval per webhook; the
buttons of those messages can be clicked (`interactivity`)."""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from apev_sinks.clock import Clock
from apev_sinks.slack.exceptions import (
    ChannelIsArchivedError,
    ChannelNotFoundError,
    InvalidBlocksError,
    InvalidBlocksFormatError,
    InvalidPayloadError,
    NoTextError,
    RateLimitedError,
    SlackError,
    TooManyAttachmentsError,
)

# Path after `/services/` -> channel. Shaped like real webhook paths (T<team>/B<bot>/<secret>).
DEFAULT_WEBHOOKS: Mapping[str, str] = {
    "T0APEV0000/B0ALERTS00/apev-local-alerts": "#alerts",
    "T0APEV0000/B0BILLING0/apev-local-billing": "#billing",
}
MAX_BLOCKS = 50
MAX_ATTACHMENTS = 100


@dataclass
class Webhook:
    path: str
    channel: str
    archived: bool = False
    last_accepted: float | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "channel": self.channel, "archived": self.archived}


@dataclass(frozen=True)
class SlackMessage:
    id: int
    webhook: str
    channel: str
    text: str | None
    blocks: list[Any] | None
    payload: dict[str, Any]
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook": self.webhook,
            "channel": self.channel,
            "text": self.text,
            "blocks": self.blocks,
            "payload": self.payload,
            "received_at": self.received_at.isoformat(),
        }


@dataclass(frozen=True)
class SlackRejection:
    webhook: str
    error: str
    status: int
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"webhook": self.webhook, "error": self.error, "status": self.status, "at": self.at.isoformat()}


def parse_payload(body: bytes, content_type: str) -> dict[str, Any]:
    """Slack reads JSON bodies, or a form whose `payload` field holds the JSON."""
    try:
        text = body.decode("utf-8")
        # A form's `payload` field holds the JSON; a raw JSON body is read whatever the content type says.
        if content_type.startswith("application/x-www-form-urlencoded") and not text.lstrip().startswith("{"):
            fields = parse_qs(text)
            if "payload" not in fields:
                raise InvalidPayloadError("a form body needs a `payload` field holding JSON")
            text = fields["payload"][0]
        data = json.loads(text) if text.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayloadError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidPayloadError(f"the payload must be a JSON object, got {type(data).__name__}")
    return data


def validate_message(payload: dict[str, Any]) -> None:
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidPayloadError(f"`text` must be a string, got {type(text).__name__}")
    blocks = payload.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list):
            raise InvalidBlocksFormatError(f"`blocks` must be an array, got {type(blocks).__name__}")
        if len(blocks) > MAX_BLOCKS:
            raise InvalidBlocksError(f"at most {MAX_BLOCKS} blocks per message, got {len(blocks)}")
        for i, block in enumerate(blocks):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise InvalidBlocksError(f"blocks[{i}] must be an object with a string `type`")
    attachments = payload.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list):
            raise InvalidPayloadError(f"`attachments` must be an array, got {type(attachments).__name__}")
        if len(attachments) > MAX_ATTACHMENTS:
            raise TooManyAttachmentsError(f"at most {MAX_ATTACHMENTS} attachments, got {len(attachments)}")
    if not (text or "").strip() and not blocks and not attachments:
        raise NoTextError("the message needs `text`, `blocks` or `attachments`")


class SlackBackend:
    def __init__(
        self,
        clock: Clock,
        *,
        min_interval: float = 1.0,
        webhooks: Mapping[str, str] | None = None,
    ) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must be >= 0 seconds, got {min_interval}")
        self.clock = clock
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._webhooks: dict[str, Webhook] = {}
        self._messages: list[SlackMessage] = []
        self._rejections: list[SlackRejection] = []
        for path, channel in (DEFAULT_WEBHOOKS if webhooks is None else webhooks).items():
            self.register(path, channel)
        from apev_sinks.slack.interactivity import Interactivity  # it reads SlackMessage from here

        self.interactivity = Interactivity(clock)
        """Buttons: signed `block_actions` to the app's Request URL, and `response_url` updates."""

    def register(self, path: str, channel: str | None = None, *, archived: bool = False) -> Webhook:
        path = path.strip().removeprefix("/").removeprefix("services/").strip("/")
        if not path:
            raise ValueError("a webhook path must be non-empty, e.g. 'T000/B000/secret'")
        with self._lock:
            hook = Webhook(path=path, channel=channel or f"#{path.rsplit('/', 1)[-1]}", archived=archived)
            self._webhooks[path] = hook
            return hook

    def webhooks(self) -> list[Webhook]:
        with self._lock:
            return list(self._webhooks.values())

    def post(self, path: str, body: bytes, content_type: str = "application/json") -> SlackMessage:
        """Accept one message or raise the `SlackError` Slack would answer with."""
        try:
            return self._post(path, body, content_type)
        except SlackError as exc:
            with self._lock:
                self._rejections.append(SlackRejection(path, exc.code, exc.status, self.clock.now()))
            raise

    def _post(self, path: str, body: bytes, content_type: str) -> SlackMessage:
        with self._lock:
            hook = self._webhooks.get(path)
        if hook is None:
            raise ChannelNotFoundError(f"no webhook is registered at /services/{path}")
        if hook.archived:
            raise ChannelIsArchivedError(f"{hook.channel} is archived")
        payload = parse_payload(body, content_type)
        validate_message(payload)
        with self._lock:
            now = self.clock.monotonic()
            if hook.last_accepted is not None and now < hook.last_accepted + self.min_interval:
                raise RateLimitedError(retry_after=max(1, math.ceil(hook.last_accepted + self.min_interval - now)))
            hook.last_accepted = now
            message = SlackMessage(
                id=next(self._ids),
                webhook=path,
                channel=hook.channel,
                text=payload.get("text"),
                blocks=payload.get("blocks"),
                payload=payload,
                received_at=self.clock.now(),
            )
            self._messages.append(message)
            return message

    def messages(self, webhook: str | None = None) -> list[SlackMessage]:
        with self._lock:
            return [m for m in self._messages if webhook is None or m.webhook == webhook]

    def message(self, message_id: int) -> SlackMessage | None:
        with self._lock:
            return next((m for m in self._messages if m.id == message_id), None)

    def rejections(self, webhook: str | None = None) -> list[SlackRejection]:
        with self._lock:
            return [r for r in self._rejections if webhook is None or r.webhook == webhook]

    def reset(self) -> None:
        """Forget messages, rejections and rate-limit state; keep the registered webhooks."""
        with self._lock:
            self._messages.clear()
            self._rejections.clear()
            for hook in self._webhooks.values():
                hook.last_accepted = None
        self.interactivity.reset()
