"""Tenant SQL: the guard, the tenant reader principal, limits, paging and the result cache.

    query(tenant, request)      guard (sqlglot; verdicts remembered) -> cache -> Statement Execution as
                                `tenant_<t>_reader` (parameters bound as `:name`), limits (rows, bytes, timeout),
                                first page + cursor
    page(tenant, cursor)        the next page of a cached result
    on_run_finished(event)      a successful ingest (or insights) run of a tenant: drop its cached results

Isolation is enforced twice: `sqlguard.check` refuses any reference outside the tenant's catalog before anything
runs, and the statement runs with the reader principal's token, so Unity Catalog grants (`USE_CATALOG` on the
tenant's catalog, `SELECT` on its gold schema, given by ingest) are the second wall.

The cache is per replica and in memory. Every replica invalidates itself: it consumes `run.finished` with a
consumer group of its own (see handlers.py). A result whose query started before an invalidation is not stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from apev_contracts import RunFinished, naming
from apev_contracts.envelope import CloudEvent
from apev_serving.gateway import Gateway, StatementRequest, StatementTimeout
from apev_serving.settings import Settings
from apev_serving.sqlguard import PARAMETER_NAME, Refusal, check_memo, check_schema

log = structlog.get_logger("apev.serving.sql")

_INTEGERS = {"BYTE", "SHORT", "INT", "LONG"}
_FLOATS = {"FLOAT", "DOUBLE"}


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str | None
    type: str | None = None  # a Databricks type the server casts to (STRING when omitted)


@dataclass(frozen=True)
class QueryRequest:
    statement: str
    catalog: str | None = None
    schema: str = "gold"
    parameters: tuple[Parameter, ...] = ()
    page_rows: int | None = None
    timeout_seconds: float | None = None


@dataclass
class _Entry:
    tenant_id: str
    statement_id: str
    columns: list[dict[str, Any]]
    rows: list[list[Any]]
    size: int
    expires: float


@dataclass
class _Cache:
    """Results by key, least recently used first; bounded by entries and bytes; per-tenant generations so a
    result computed across an invalidation is never stored."""

    max_entries: int
    max_bytes: int
    entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    size: int = 0
    generations: dict[str, int] = field(default_factory=dict)

    def get(self, key: str) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires < time.monotonic():
            self._drop(key)
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: _Entry, generation: int) -> bool:
        if self.generations.get(entry.tenant_id, 0) != generation or entry.size > self.max_bytes:
            return False
        if key in self.entries:
            self._drop(key)
        self.entries[key] = entry
        self.size += entry.size
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))
        return True

    def invalidate(self, tenant_id: str) -> int:
        self.generations[tenant_id] = self.generations.get(tenant_id, 0) + 1
        keys = [k for k, e in self.entries.items() if e.tenant_id == tenant_id]
        for k in keys:
            self._drop(k)
        return len(keys)

    def _drop(self, key: str) -> None:
        entry = self.entries.pop(key)
        self.size -= entry.size


def _typed(value: str | None, type_name: str) -> Any:
    """JSON_ARRAY values are strings: integers, floats and booleans become JSON numbers and booleans; DECIMAL
    stays a string (exact), as do dates, timestamps and nested types."""
    if value is None:
        return None
    if type_name in _INTEGERS:
        return int(value)
    if type_name in _FLOATS:
        return float(value)
    if type_name == "BOOLEAN":
        return value.lower() == "true"
    return value


def _cursor(key: str, offset: int, page_rows: int) -> str:
    raw = json.dumps({"k": key, "o": offset, "n": page_rows}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[str, int, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(raw["k"]), int(raw["o"]), int(raw["n"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise Refusal(400, "invalid_cursor", "cursor", "is not a cursor this service handed out") from None


class SqlQueries:
    def __init__(self, gateway: Gateway, settings: Settings, registry: CollectorRegistry) -> None:
        self.gw = gateway
        self.settings = settings
        self.cache = _Cache(settings.sql_cache_max_entries, settings.sql_cache_max_bytes)
        self._tokens: dict[str, tuple[str, float]] = {}  # tenant -> (reader token, renew at)
        self._token_locks: dict[str, asyncio.Lock] = {}
        self.lookups = Counter(
            "apev_serving_sql_cache_total", "SQL result cache lookups by outcome", ["outcome"], registry=registry
        )
        self.invalidations = Counter(
            "apev_serving_sql_cache_invalidations_total",
            "Tenant invalidations of the SQL result cache (a successful ingest or insights run)",
            registry=registry,
        )
        self.statements = Counter(
            "apev_serving_sql_statements_total",
            "Tenant SQL requests by outcome (refused by the guard, ran, failed, too large, timed out)",
            ["outcome"],
            registry=registry,
        )
        Gauge("apev_serving_sql_cache_bytes", "Bytes of results in the SQL cache", registry=registry).set_function(
            lambda: self.cache.size
        )

    # ------------------------------------------------------------------ query
    async def query(self, tenant_id: str, req: QueryRequest) -> dict[str, Any]:
        catalog = naming.catalog_name(tenant_id)
        try:
            checked, params = self._check(catalog, req)
        except Refusal:
            self.statements.labels("refused").inc()
            raise
        principal = naming.reader_principal(tenant_id)
        key = hashlib.sha256(
            json.dumps([tenant_id, principal, catalog, req.schema.lower(), checked.statement, params]).encode()
        ).hexdigest()
        page_rows = self._page_rows(req.page_rows)
        entry = self.cache.get(key)
        if entry is not None:
            self.lookups.labels("hit").inc()
            self.statements.labels("cached").inc()
            return self._page(key, entry, 0, page_rows, cache="hit")
        self.lookups.labels("miss").inc()
        generation = self.cache.generations.get(tenant_id, 0)
        timeout = min(req.timeout_seconds or self.settings.sql_timeout_seconds, self.settings.sql_timeout_seconds)
        request = StatementRequest(
            statement=checked.statement,
            warehouse_id=await self.gw.warehouse(self.settings.warehouse_id),
            catalog=catalog,
            schema=req.schema,
            parameters=[(n, v, t) for n, v, t in params],
            row_limit=self.settings.sql_max_rows + 1,  # one more than allowed: "more than the limit" is visible
            byte_limit=self.settings.sql_max_bytes + 1,
            timeout_seconds=timeout,
        )
        try:
            result = await self.gw.statement(await self.reader_token(tenant_id), request)
        except StatementTimeout as exc:
            self.statements.labels("timeout").inc()
            raise Refusal(504, "timeout", "statement", f"did not finish within {timeout:g} s (timeout_seconds, at "
                          f"most SERVING_SQL_TIMEOUT_SECONDS={self.settings.sql_timeout_seconds:g}); it was "
                          f"cancelled (statement {exc})") from None  # fmt: skip
        if result.state != "SUCCEEDED":
            self.statements.labels("failed").inc()
            message = result.error or result.state
            if "INSUFFICIENT_PERMISSIONS" in message or "PERMISSION_DENIED" in message:
                raise Refusal(403, "forbidden", principal, f"Unity Catalog refused the statement: {message[:1000]}")
            raise Refusal(400, "statement_failed", "statement", f"{result.state}: {message[:1000]}")
        self._within_limits(result.rows, result.truncated)
        names = [str(c.get("type_name") or "STRING") for c in result.columns]
        rows = [[_typed(v, t) for v, t in zip(row, names, strict=False)] for row in result.rows]
        size = sum(len(json.dumps(r)) for r in result.rows)
        entry = _Entry(tenant_id, result.statement_id, result.columns, rows, size,
                       time.monotonic() + self.settings.sql_cache_ttl_seconds)  # fmt: skip
        self.cache.put(key, entry, generation)
        self.statements.labels("ran").inc()
        log.info(
            "sql_ran", tenant_id=tenant_id, statement_id=result.statement_id, rows=len(rows), tables=checked.tables
        )
        return self._page(key, entry, 0, page_rows, cache="miss")

    def _check(self, catalog: str, req: QueryRequest) -> tuple[Any, list[tuple[str, str | None, str | None]]]:
        if req.catalog is not None and req.catalog.lower() != catalog:
            raise Refusal(403, "forbidden", f"catalog {req.catalog}", f"the token's tenant reads only {catalog}")
        if len(req.statement) > self.settings.sql_max_statement_chars:
            raise Refusal(413, "statement_too_large", "statement", f"{len(req.statement)} characters, over "
                          f"SERVING_SQL_MAX_STATEMENT_CHARS={self.settings.sql_max_statement_chars}")  # fmt: skip
        check_schema(req.schema, catalog=catalog)
        params: dict[str, tuple[str, str | None, str | None]] = {}
        for p in req.parameters:
            if not PARAMETER_NAME.fullmatch(p.name):
                raise Refusal(400, "invalid_parameter", p.name, f"a parameter name matches {PARAMETER_NAME.pattern}")
            if p.name in params:
                raise Refusal(400, "invalid_parameter", p.name, "given twice")
            params[p.name] = (p.name, p.value, p.type)
        checked = check_memo(req.statement, catalog=catalog, parameters=params)
        return checked, [params[n] for n in sorted(params)]

    def _within_limits(self, rows: list[list[str | None]], truncated: bool) -> None:
        max_rows, max_bytes = self.settings.sql_max_rows, self.settings.sql_max_bytes
        if len(rows) > max_rows:
            self.statements.labels("too_large").inc()
            raise Refusal(413, "result_too_large", "result", f"more than {max_rows} rows (SERVING_SQL_MAX_ROWS); "
                          "add a LIMIT, a filter or an aggregate")  # fmt: skip
        size = sum(len(json.dumps(r)) for r in rows)
        if truncated or size > max_bytes:
            self.statements.labels("too_large").inc()
            raise Refusal(413, "result_too_large", "result", f"more than {max_bytes} bytes (SERVING_SQL_MAX_BYTES); "
                          "select fewer columns or rows")  # fmt: skip

    def _page_rows(self, asked: int | None) -> int:
        rows = asked or min(self.settings.sql_page_rows, self.settings.sql_max_rows)
        if not 1 <= rows <= self.settings.sql_max_rows:
            raise Refusal(400, "invalid_request", "page_rows", f"must be 1..{self.settings.sql_max_rows}")
        return rows

    def _page(self, key: str, entry: _Entry, offset: int, page_rows: int, *, cache: str) -> dict[str, Any]:
        end = offset + page_rows
        return {
            "statement_id": entry.statement_id,
            "columns": entry.columns,
            "rows": entry.rows[offset:end],
            "row_offset": offset,
            "row_count": len(entry.rows),
            "next_cursor": _cursor(key, end, page_rows) if end < len(entry.rows) else None,
            "cache": cache,
        }

    async def page(self, tenant_id: str, cursor: str, page_rows: int | None = None) -> dict[str, Any]:
        key, offset, size = _uncursor(cursor)
        entry = self.cache.get(key)
        if entry is None:
            raise Refusal(410, "cursor_expired", "cursor", "its result left the cache (TTL, eviction or a newer gold "
                          "run); run the statement again")  # fmt: skip
        if entry.tenant_id != tenant_id:
            raise Refusal(403, "forbidden", "cursor", "belongs to another tenant's result")
        self.lookups.labels("hit").inc()
        return self._page(key, entry, offset, self._page_rows(page_rows or size), cache="hit")

    # ------------------------------------------------------------------ the reader principal
    async def reader_token(self, tenant_id: str) -> str:
        lock = self._token_locks.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            held = self._tokens.get(tenant_id)
            if held is not None and held[1] > time.monotonic():
                return held[0]
            principal = naming.reader_principal(tenant_id)
            app_id = await self.gw.principal_id(principal)
            if app_id is None:
                raise Refusal(409, "not_provisioned", principal, "the tenant's reader principal does not exist yet "
                              "(ingest creates it with the tenant's catalog and its grants)")  # fmt: skip
            lifetime = self.settings.reader_token_lifetime_seconds
            token = await self.gw.token_for(app_id, lifetime)
            self._tokens[tenant_id] = (token, time.monotonic() + lifetime * 0.75)
            return token

    # ------------------------------------------------------------------ invalidation
    def forget_tenant(self, tenant_id: str) -> int:
        """An offboarded tenant: its cached results and its reader token (ingest deletes the principal)."""
        self._tokens.pop(tenant_id, None)
        return self.cache.invalidate(tenant_id)

    def on_run_finished(self, event: CloudEvent[RunFinished]) -> int:
        run = event.data
        if run.outcome != "success" or run.kind not in self.settings.sql_invalidating_kinds:
            return 0
        dropped = self.cache.invalidate(run.tenant_id)
        self.invalidations.inc()
        log.info("sql_cache_invalidated", tenant_id=run.tenant_id, run_id=run.run_id, kind=run.kind, dropped=dropped)
        return dropped
