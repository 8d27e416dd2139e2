"""Durable state: one SQLite file in the data directory.

Each API area keeps its objects in memory (fast reads under the workspace lock) and writes every change
through to the `objects` table as JSON, keyed by (kind, key). Later areas (Unity Catalog, SQL, serving)
add kinds of their own; they need no schema change. Sequences hand out ids that never repeat, even across
restarts, which is what makes idempotency tokens and run ids safe to keep.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,"
            " PRIMARY KEY (kind, key))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")

    def load(self, kind: str) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, body FROM objects WHERE kind = ?", (kind,)).fetchall()
        return {key: json.loads(body) for key, body in rows}

    def put(self, kind: str, key: str | int, obj: Any) -> None:
        body = json.dumps(obj, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT INTO objects (kind, key, body) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
                (kind, str(key), body),
            )

    def delete(self, kind: str, key: str | int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (kind, str(key)))

    def next_id(self, name: str, start: int = 1) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM sequences WHERE name = ?", (name,)).fetchone()
            value = start if row is None else int(row[0]) + 1
            self._db.execute(
                "INSERT INTO sequences (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = ?",
                (name, value, value),
            )
            return value

    def close(self) -> None:
        with self._lock:
            self._db.close()
