"""What a handler receives, and the delivery settings a broker carries (§4 rules 1-4).

The rules themselves run in `apev_runtime.delivery.consumer` (batched consumption, the inbox, retries and
the DLQ); this module keeps the names handlers import:

    async def on_x(event: CloudEvent[T], tx: Tx) -> None: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from faststream import Context
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_runtime.db.engine import Database
from apev_runtime.settings import DeliverySettings

TX_KEY = "apev_tx"

Tx = Annotated[AsyncConnection, Context(TX_KEY)]
"""Handler parameter: the transaction holding this event's inbox row. Write effects and outbox rows on it.

In a subscriber declared with `outside_calls=True` the inbox row is written last, and the handler may
`await tx.commit()` to make a step durable before calling an outside system (no write lock is then held
during the call); each such step must be idempotent on redelivery."""


@dataclass
class Delivery:
    """Delivery's dependencies, one per broker (`make_broker` builds it; `subscriber` uses it)."""

    db: Database | None
    settings: DeliverySettings
    registry: CollectorRegistry = REGISTRY
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    topic_prefix: str = ""
    """Stripped from a record's topic before the contracts check which topic a type belongs to."""
