"""Verify the MCP server's signed webhooks.

The sender signs ``f"{timestamp}.".encode() + body`` with HMAC-SHA256 and sends:

    X-MCP-Timestamp: 1767225600                 (Unix seconds)
    X-MCP-Signature: sha256=<hex digest>
    X-MCP-Event:     sync.completed | data.changed
    X-MCP-Delivery:  <the event id; the same on every retry of one delivery>

A retry is signed afresh (new timestamp), so the replay cache keys on the signature: an exact resend is
refused, a genuine retry is accepted and left to the receiver's inbox to deduplicate by event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TIMESTAMP_HEADER = "X-MCP-Timestamp"
SIGNATURE_HEADER = "X-MCP-Signature"
EVENT_HEADER = "X-MCP-Event"
DELIVERY_HEADER = "X-MCP-Delivery"
SIGNATURE_PREFIX = "sha256="


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh MCP webhook; ``reason`` says which check failed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    tenant_code: str
    created_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-MCP-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signed_headers(secret: str, body: bytes, *, event: str, delivery_id: str, timestamp: int) -> dict[str, str]:
    """All four headers, as the server sends them (for tests and local senders)."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        "Content-Type": "application/json",
    }


class ReplayCache:
    """Signatures seen within the freshness window (bounded; older entries expire with the window)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries

    def add_if_new(self, key: str, expires_at: float, now: float) -> bool:
        while self._seen:
            oldest_key, oldest_exp = next(iter(self._seen.items()))
            if oldest_exp > now and len(self._seen) < self._max:
                break
            del self._seen[oldest_key]
        if key in self._seen:
            return False
        self._seen[key] = expires_at
        return True


class WebhookVerifier:
    """Check signature (constant time), timestamp window and replay, then parse the event.

    ``secrets`` may list several during a rotation; any one matching is enough.
    """

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        tolerance: float = 300.0,
        clock: Callable[[], float] = time.time,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        self._secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        if not self._secrets or not all(self._secrets):
            raise ValueError("WebhookVerifier needs at least one non-empty secret")
        self.tolerance = tolerance
        self._clock = clock
        self._replays = replay_cache if replay_cache is not None else ReplayCache()

    def verify(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        raw_ts = lowered.get(TIMESTAMP_HEADER.lower())
        signature = lowered.get(SIGNATURE_HEADER.lower())
        if raw_ts is None or signature is None:
            raise WebhookVerificationError("missing_header", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} required")
        try:
            timestamp = int(raw_ts)
        except ValueError:
            raise WebhookVerificationError("bad_timestamp", f"{TIMESTAMP_HEADER} is not Unix seconds") from None
        if not any(hmac.compare_digest(sign(secret, timestamp, body), signature) for secret in self._secrets):
            raise WebhookVerificationError("bad_signature", "signature does not match the body and timestamp")
        now = self._clock()
        if abs(now - timestamp) > self.tolerance:
            raise WebhookVerificationError(
                "stale_timestamp", f"timestamp {timestamp} is outside the {self.tolerance:.0f}s window"
            )
        if not self._replays.add_if_new(signature, timestamp + self.tolerance, now):
            raise WebhookVerificationError("replayed", "this exact webhook was already received")
        try:
            return WebhookEvent.model_validate(json.loads(body))
        except (ValueError, ValidationError) as exc:
            raise WebhookVerificationError("bad_body", f"body is not an MCP webhook event: {exc}") from exc
