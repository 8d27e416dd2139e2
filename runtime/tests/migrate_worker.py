"""One replica's start-up migration: says `ready` once imported and connected, upgrades when `GO_FILE` appears
(so several of them upgrade at the same moment), prints `done` or the error, and exits 0 or 1."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from sqlalchemy import text

from apev_runtime.db import migrate
from apev_runtime.db.engine import create_database


async def main() -> int:
    db = create_database(os.environ["DB_URL"], os.environ.get("DB_SCHEMA") or None)
    go = Path(os.environ["GO_FILE"])
    try:
        async with db.engine.connect() as conn:  # connected (and imported) before the start signal
            await conn.execute(text("SELECT 1"))
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                print("no start signal", flush=True)
                return 1
            await asyncio.sleep(0.005)
        try:
            await migrate.upgrade(db)
        except Exception as exc:
            print(f"error {type(exc).__name__}: {exc}".replace("\n", " ")[:500], flush=True)
            return 1
        print("done", flush=True)
        return 0
    finally:
        await db.dispose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
