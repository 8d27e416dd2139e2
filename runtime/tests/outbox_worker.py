"""A relay process that dies (SIGKILL) right after the broker acknowledged a send, before marking the row."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from aiokafka import AIOKafkaProducer

from apev_runtime.db.engine import create_database
from apev_runtime.outbox import OutboxRelay


class DyingProducer:
    def __init__(self, producer: AIOKafkaProducer, prefix: str) -> None:
        self.producer = producer
        self.prefix = prefix

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Any:
        await self.producer.send_and_wait(self.prefix + topic, value=value, key=key, headers=headers)
        os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    db = create_database(os.environ["DB_URL"], os.environ["DB_SCHEMA"])
    producer = AIOKafkaProducer(bootstrap_servers=os.environ["BOOTSTRAP"], enable_idempotence=True)
    await producer.start()
    await OutboxRelay(db, DyingProducer(producer, os.environ["PREFIX"])).publish_pending()


if __name__ == "__main__":
    asyncio.run(main())
