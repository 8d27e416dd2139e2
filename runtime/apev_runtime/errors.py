"""How a failure is classified decides what delivery does with the message.

    Exception
     ├── PermanentError      the input can never succeed: straight to the DLQ, never retried
     └── TransientError      the world may heal: retried with backoff, then the DLQ
    CircuitOpenError         a host is known down (apev_runtime.http): consumption pauses, no DLQ
    DatabaseUnavailable      the service's own database cannot be reached (restart, failover, a dropped
                             connection): consumption pauses, no DLQ (the event is fine; our store is not)

Services raise these (or let library errors through: `classify` maps the common ones).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

import httpx
import pydantic
from sqlalchemy.exc import DBAPIError

from apev_contracts.errors import ContractError
from apev_runtime.http import CircuitOpenError
from apev_runtime.mcp import McpError, McpUnavailableError


class PermanentError(Exception):
    """The message cannot be processed, however often it is retried (bad input, 4xx, a refused state)."""


class TransientError(Exception):
    """The message may succeed later (timeouts, 5xx, 429, a database that went away)."""


class DatabaseUnavailable(TransientError):
    """The service's own database could not be reached, or dropped the connection mid-transaction.

    Not the event's fault: delivery pauses and redelivers it (like an open circuit) instead of spending its
    retries and dead-lettering it while PostgreSQL restarts."""


# SQLSTATE classes of a server that is going away or not there yet: 08 connection exception, 57P01 admin
# shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up / shutting down).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says the database is unreachable rather than the statement wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DatabaseUnavailable):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            state = getattr(current.orig, "sqlstate", None) or getattr(current.orig, "pgcode", None)
            if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
                return True
        state = getattr(current, "sqlstate", None)  # asyncpg's own errors, when not wrapped
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        current = current.__cause__ or current.__context__
    return False


class Failure(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    CIRCUIT_OPEN = "circuit_open"


def classify(exc: BaseException) -> Failure:
    """Decide whether `exc` is worth retrying."""
    if isinstance(exc, CircuitOpenError):  # checked first: the MCP flavour is also "unavailable"
        return Failure.CIRCUIT_OPEN
    if database_unavailable(exc):
        return Failure.CIRCUIT_OPEN
    if isinstance(exc, McpUnavailableError):
        return Failure.TRANSIENT
    if isinstance(exc, McpError):  # auth, tenant, not found, conflict, validation, bad data: retrying won't help
        return Failure.PERMANENT
    if isinstance(exc, PermanentError | ContractError | pydantic.ValidationError):
        return Failure.PERMANENT
    if isinstance(exc, TransientError):
        return Failure.TRANSIENT
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return Failure.TRANSIENT if status in (408, 425, 429) or status >= 500 else Failure.PERMANENT
    code = getattr(exc, "status_code", None)  # e.g. the MCP client's typed errors
    if isinstance(code, int) and 400 <= code < 500 and code not in (408, 425, 429):
        return Failure.PERMANENT
    if _is_databricks_permanent(exc):
        return Failure.PERMANENT
    if isinstance(exc, httpx.TransportError | asyncio.TimeoutError | OSError):
        return Failure.TRANSIENT
    # Unknown errors (bugs included) are retried a bounded number of times, then dead-lettered with their
    # class and message: a bug must not loop forever, nor lose the event.
    return Failure.TRANSIENT


def _is_databricks_permanent(exc: BaseException) -> bool:
    try:
        from databricks.sdk.errors import (
            BadRequest,
            InvalidParameterValue,
            NotFound,
            PermissionDenied,
            ResourceAlreadyExists,
            Unauthenticated,
        )
    except ImportError:  # pragma: no cover - the SDK is a dependency of the runtime
        return False
    permanent = (BadRequest, InvalidParameterValue, NotFound, PermissionDenied, ResourceAlreadyExists, Unauthenticated)
    return isinstance(exc, permanent)
