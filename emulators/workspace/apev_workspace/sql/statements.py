"""The Statement Execution API without HTTP: statements run on a thread pool; a request waits up to
`wait_timeout` for the result and otherwise answers PENDING/RUNNING (or cancels, with `on_wait_timeout`
CANCEL); results stay in memory, split into chunks, for `GET` and `result/chunks/{n}`."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from apev_workspace.identity.models import Principal
from apev_workspace.sql.exceptions import InvalidParameterValue, ResourceDoesNotExist, SqlError
from apev_workspace.sql.session import Backend, Result, Session
from apev_workspace.sql.types import sql_type_name
from apev_workspace.sql.warehouses import Warehouses

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "CLOSED"}
KEEP = 2000  # finished statements kept for polling


@dataclass
class Statement:
    statement_id: str
    owner: str
    session: Session
    warehouse_id: str = ""
    state: str = "PENDING"
    error: dict[str, str] | None = None
    result: Result | None = None
    truncated: bool = False
    chunks: list[tuple[int, list[list[str | None]]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def parse_wait_timeout(value: Any) -> int:
    match = re.fullmatch(r"(\d+)s", str(value if value is not None else "10s"))
    seconds = int(match[1]) if match else -1
    if seconds != 0 and not 5 <= seconds <= 50:
        raise InvalidParameterValue(f"wait_timeout must be 0s or between 5s and 50s (e.g. '10s'), got {value!r}")
    return seconds


def parse_parameters(items: Any) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for item in items or []:
        if not isinstance(item, dict) or not item.get("name"):
            raise InvalidParameterValue("Every statement parameter needs a name")
        out[str(item["name"])] = (item.get("value"), str(item.get("type") or "STRING"))
    return out


EndListener = Callable[[str, int, int, Principal], None]  # (warehouse id, started ms, ended ms, principal)


class Statements:
    chunk_rows = 10_000

    def __init__(self, backend: Backend, warehouses: Warehouses, on_end: EndListener, workers: int = 8) -> None:
        self.backend = backend
        self.warehouses = warehouses
        self.on_end = on_end
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apev-sql")
        self._items: OrderedDict[str, Statement] = OrderedDict()
        self._lock = threading.Lock()

    def shutdown(self) -> None:
        with self._lock:
            items = list(self._items.values())
        for st in items:
            if st.state not in TERMINAL:
                st.session.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ API
    def execute(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        text = body.get("statement")
        if not text or not str(text).strip():
            raise InvalidParameterValue("Missing required field: statement")
        wid = body.get("warehouse_id")
        if not wid:
            raise InvalidParameterValue("Missing required field: warehouse_id")
        self.warehouses.require_use(who, str(wid))
        self.warehouses.ensure_running(str(wid))
        wait = parse_wait_timeout(body.get("wait_timeout"))
        on_timeout = str(body.get("on_wait_timeout") or "CONTINUE").upper()
        if on_timeout not in ("CONTINUE", "CANCEL"):
            raise InvalidParameterValue(f"on_wait_timeout must be CONTINUE or CANCEL, got {on_timeout}")
        if str(body.get("disposition") or "INLINE").upper() != "INLINE":
            raise InvalidParameterValue("Only disposition INLINE is supported by the local workspace")
        if str(body.get("format") or "JSON_ARRAY").upper() != "JSON_ARRAY":
            raise InvalidParameterValue("The INLINE disposition supports only format JSON_ARRAY")
        row_limit = body.get("row_limit")
        byte_limit = body.get("byte_limit")
        params = parse_parameters(body.get("parameters"))
        session = Session(self.backend, who, body.get("catalog") or None, body.get("schema") or None)
        st = Statement("01ef" + str(uuid.uuid4())[4:], who.id, session, str(wid))
        with self._lock:
            self._items[st.statement_id] = st
            self._evict()
        submitted = self.describe(st)  # with wait_timeout 0s the answer is always PENDING, as on Databricks
        self._pool.submit(self._run, st, str(text), params, row_limit, byte_limit)
        if not wait:
            return submitted
        if not st.done.wait(wait) and on_timeout == "CANCEL":
            self._cancel(st)
        return self.describe(st)

    def _run(self, st: Statement, text: str, params: dict[str, tuple[Any, str]], rows: Any, size: Any) -> None:
        if st.state != "PENDING":
            st.done.set()
            return
        started = int(time.time() * 1000)
        try:
            st.state = "RUNNING"
            result = st.session.run_script(text, params)
            if st.state == "CANCELED":
                return
            self._finish(st, result, int(rows) if rows else None, int(size) if size else None)
            st.state = "SUCCEEDED"
        except SqlError as err:
            if st.state != "CANCELED":
                st.error = {"error_code": err.error_code, "message": err.message}
                st.state = "CANCELED" if err.error_code == "CANCELLED" else "FAILED"
        except Exception as err:  # a bug, but the statement must still end
            st.error = {"error_code": "INTERNAL_ERROR", "message": f"{type(err).__name__}: {err}"}
            st.state = "FAILED"
        finally:
            st.done.set()
            self.on_end(st.warehouse_id, started, int(time.time() * 1000), st.session.who)

    def _finish(self, st: Statement, result: Result, row_limit: int | None, byte_limit: int | None) -> None:
        rows = result.rows
        if row_limit is not None and len(rows) > row_limit:
            rows, st.truncated = rows[:row_limit], True
        if byte_limit is not None:
            total = 0
            for i, row in enumerate(rows):
                total += len(json.dumps(row))
                if total > byte_limit:
                    rows, st.truncated = rows[:i], True
                    break
        st.result = Result(result.columns, rows)
        st.chunks = [(i, rows[i : i + self.chunk_rows]) for i in range(0, len(rows), self.chunk_rows)]

    def _evict(self) -> None:
        while len(self._items) > KEEP:
            oldest = next(iter(self._items.values()))
            if oldest.state not in TERMINAL:
                break
            self._items.popitem(last=False)

    def _get(self, who: Principal, statement_id: str) -> Statement:
        with self._lock:
            st = self._items.get(statement_id)
        if st is None or (st.owner != who.id and not who.is_admin):
            raise ResourceDoesNotExist(f"Statement {statement_id} does not exist.")
        return st

    def get(self, who: Principal, statement_id: str) -> dict[str, Any]:
        return self.describe(self._get(who, statement_id))

    def cancel(self, who: Principal, statement_id: str) -> None:
        self._cancel(self._get(who, statement_id))

    def _cancel(self, st: Statement) -> None:
        if st.state in TERMINAL:
            return
        st.state = "CANCELED"
        st.session.cancel()
        st.done.set()

    def chunk(self, who: Principal, statement_id: str, index: int) -> dict[str, Any]:
        st = self._get(who, statement_id)
        if st.state != "SUCCEEDED":
            raise InvalidParameterValue(f"Statement {statement_id} has no result: it is {st.state}")
        if index < 0 or (index >= len(st.chunks) and not (index == 0 and not st.chunks)):
            raise InvalidParameterValue(f"Chunk index {index} is out of range (0-{max(0, len(st.chunks) - 1)})")
        return self._chunk(st, index)

    # ------------------------------------------------------------------ wire shape
    def _chunk(self, st: Statement, index: int) -> dict[str, Any]:
        if not st.chunks:
            return {"chunk_index": 0, "row_offset": 0, "row_count": 0, "data_array": []}
        offset, rows = st.chunks[index]
        out: dict[str, Any] = {"chunk_index": index, "row_offset": offset, "row_count": len(rows), "data_array": rows}
        if index + 1 < len(st.chunks):
            out["next_chunk_index"] = index + 1
            out["next_chunk_internal_link"] = f"/api/2.0/sql/statements/{st.statement_id}/result/chunks/{index + 1}"
        return out

    def describe(self, st: Statement) -> dict[str, Any]:
        state = st.state
        out: dict[str, Any] = {"statement_id": st.statement_id, "status": {"state": state}}
        if st.error is not None:
            out["status"]["error"] = dict(st.error)
        if state == "SUCCEEDED" and st.result is not None:
            columns = []
            for position, (name, text, type_name) in enumerate(st.result.columns):
                column: dict[str, Any] = {
                    "name": name,
                    "type_text": text,
                    "type_name": sql_type_name(type_name),
                    "position": position,
                }
                if type_name == "DECIMAL":
                    precision, scale = text[8:-1].split(",")
                    column |= {"type_precision": int(precision), "type_scale": int(scale)}
                columns.append(column)
            out["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(columns), "columns": columns},
                "total_chunk_count": len(st.chunks),
                "chunks": [
                    {"chunk_index": i, "row_offset": offset, "row_count": len(rows)}
                    for i, (offset, rows) in enumerate(st.chunks)
                ],
                "total_row_count": len(st.result.rows),
                "truncated": st.truncated,
            }
            out["result"] = self._chunk(st, 0)
        return out
