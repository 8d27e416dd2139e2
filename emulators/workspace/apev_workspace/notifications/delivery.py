"""Webhook delivery: a background sender with one FIFO queue per destination and bounded, growing backoff.

Runs never wait for it: the run listeners only enqueue. A failed POST (connection error, timeout, non-2xx)
is retried after `retry_base * 2**(attempt - 1)` seconds (2, 4, 8, 16, 32 s by default: 6 attempts over about
a minute), then dropped with a log line: Databricks sends webhooks at least once, within limits. Later events to the
same destination wait behind a retried one, so a receiver sees each destination's events in order.
The queue lives in memory: events not yet delivered when the workspace stops are lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("apev_workspace.notifications")

Target = Callable[[str], "tuple[str, tuple[str, str] | None] | None"]


@dataclass
class Delivery:
    destination_id: str
    payload: dict[str, Any]
    attempts: int = 0
    due: float = 0.0
    errors: list[str] = field(default_factory=list)


class WebhookSender:
    def __init__(
        self,
        target: Target,
        *,
        max_attempts: int = 6,
        retry_base: float = 2.0,
        retry_cap: float = 32.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._target = target
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        # trust_env=False: post straight to the receiver, as Databricks does, whatever proxy the host configures
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False, trust_env=False)
        self._queues: dict[str, deque[Delivery]] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dropped: deque[Delivery] = deque(maxlen=100)

    def enqueue(self, destination_id: str, payload: dict[str, Any]) -> None:
        """Quick and non-blocking: called from run listeners under the workspace lock."""
        with self._cond:
            self._queues.setdefault(destination_id, deque()).append(Delivery(destination_id, payload))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="apev-workspace-webhooks", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._client.close()

    def _next_due(self) -> Delivery | None:
        heads = [q[0] for q in self._queues.values() if q]
        return min(heads, key=lambda d: d.due, default=None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    head = self._next_due()
                    wait = None if head is None else head.due - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stop:
                    return
                assert head is not None
            self._attempt(head)

    def _attempt(self, delivery: Delivery) -> None:
        target = self._target(delivery.destination_id)
        ok = False
        if target is None:
            delivery.errors.append("destination deleted or not a generic webhook")
            delivery.attempts = self.max_attempts
        else:
            url, auth = target
            try:
                response = self._client.post(url, json=delivery.payload, auth=auth or httpx.USE_CLIENT_DEFAULT)
                ok = 200 <= response.status_code < 300
                if not ok:
                    delivery.errors.append(f"HTTP {response.status_code}")
            except httpx.HTTPError as err:
                delivery.errors.append(f"{type(err).__name__}: {err}")
            delivery.attempts += 1
        with self._cond:
            queue = self._queues.get(delivery.destination_id)
            if ok or delivery.attempts >= self.max_attempts:
                if queue and queue[0] is delivery:
                    queue.popleft()
                if ok:
                    self.delivered += 1
                else:
                    self.dropped.append(delivery)
                    log.warning(
                        "webhook %s to destination %s dropped after %d attempts: %s",
                        delivery.payload.get("event_type"),
                        delivery.destination_id,
                        delivery.attempts,
                        delivery.errors[-1] if delivery.errors else "",
                    )
            else:
                backoff = min(self.retry_cap, self.retry_base * 2 ** (delivery.attempts - 1))
                delivery.due = time.monotonic() + backoff
