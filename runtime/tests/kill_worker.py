"""A consumer process for the crash test: `python kill_worker.py` with its settings in the environment.

With KILL_AFTER_EFFECT=1 it SIGKILLs itself after the handler's transaction committed and before the
offset commit (an outer broker middleware runs after the delivery kit returns, before FastStream
acknowledges), which is the window the inbox exists for. With KILL_AT_CALL=N it SIGKILLs itself inside the
N-th handler call, in the middle of a batch's transaction.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from faststream import BaseMiddleware
from sqlalchemy import text

from apev_contracts import JobRequested
from apev_contracts.envelope import CloudEvent
from apev_contracts.topics import JOB_REQUESTED
from apev_runtime.broker import make_broker, subscriber
from apev_runtime.db.engine import create_database
from apev_runtime.delivery.middleware import Tx
from apev_runtime.logging import configure_logging
from apev_runtime.settings import ServiceSettings


class KillAfterEffect(BaseMiddleware):  # type: ignore[type-arg]
    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        result = await call_next(msg)
        if os.environ.get("KILL_AFTER_EFFECT") == "1":
            print("killing myself after the effect, before the offset commit", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result


async def main() -> None:
    configure_logging("INFO", "json")
    settings = ServiceSettings(
        service_name="kill-worker",
        kafka_bootstrap_servers=os.environ["BOOTSTRAP"],
        kafka_topic_prefix=os.environ["PREFIX"],
        database_url=os.environ["DB_URL"],
        database_schema=os.environ["DB_SCHEMA"],
    )
    db = create_database(settings.resolved_database_url(), settings.database_schema)
    broker = make_broker(settings, db=db, extra_middlewares=[KillAfterEffect])

    kill_at = int(os.environ.get("KILL_AT_CALL", "0"))
    calls = 0

    @subscriber(broker, JOB_REQUESTED, group_id=os.environ["GROUP"])
    async def handle(event: CloudEvent[JobRequested], tx: Tx) -> None:
        nonlocal calls
        calls += 1
        await tx.execute(text("INSERT INTO effects VALUES (:id, 'worker')"), {"id": event.id})
        if calls == kill_at:
            print(f"killing myself inside handler call {calls}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        print(f"effect written for {event.id}", flush=True)

    await broker.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
