"""Field types shared by the envelope and every event model.

Rules from ARCHITECTURE §2: money is `Decimal` (never float), times are timezone-aware UTC, ids are strings.
Each type carries its JSON Schema, so the committed schemas say what the validators enforce.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
)

from apev_contracts.cron import validate_quartz_cron
from apev_contracts.naming import JOB_KEY_PATTERN, TENANT_ID_JSON_PATTERN, normalize_tenant_id, tenant_id_problem


class ContractModel(BaseModel):
    """Base of every payload model: immutable, and tolerant of fields it does not know.

    Unknown fields are kept (`extra="allow"`) rather than dropped, so a consumer on an older minor version of
    a contract re-encodes, forwards and hashes (`CloudEvent.content_hash`) exactly what the producer sent.
    That keeps the inbox's "same id, different content" check correct while an additive change rolls out.
    """

    model_config = ConfigDict(frozen=True, extra="allow", use_attribute_docstrings=True)


# ---------------------------------------------------------------- tenant ids


@functools.lru_cache(maxsize=4096)
def _tenant_id(value: str) -> str:
    # Validated on every field of every event decoded (three times per event on a hot consumer); a tenant
    # set is small, so valid ids are remembered (a malformed one raises and is never cached).
    problem = tenant_id_problem(value)
    if problem:
        raise ValueError(problem)
    return normalize_tenant_id(value)


TenantId = Annotated[
    str,
    AfterValidator(_tenant_id),
    WithJsonSchema({"type": "string", "pattern": TENANT_ID_JSON_PATTERN}),
]

# ---------------------------------------------------------------- times


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: a timezone is required (e.g. 2026-01-31T02:00:00Z)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

# ---------------------------------------------------------------- money and other decimals


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("float is not accepted for an exact amount: send a decimal string (e.g. '12.34') or a Decimal")
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    return value


def _plain_decimal(value: Decimal) -> Decimal:
    # 1E+2 -> 100, so the JSON string always reads as a plain number
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return value.quantize(Decimal(1))
    return value


def _exact_decimal(places: int, *, description: str) -> Any:
    pattern = rf"^[0-9]{{1,18}}(\.[0-9]{{1,{places}}})?$"
    return Annotated[
        Decimal,
        BeforeValidator(_no_float),
        Field(max_digits=18 + places, decimal_places=places, allow_inf_nan=False, ge=0),
        AfterValidator(_plain_decimal),
        WithJsonSchema({"type": "string", "pattern": pattern, "description": description}),
    ]


MONEY_PLACES: Final = 6
Money = _exact_decimal(MONEY_PLACES, description="non-negative amount as a decimal string, at most 6 places")
Dbus = _exact_decimal(MONEY_PLACES, description="non-negative DBU quantity as a decimal string, at most 6 places")

# ---------------------------------------------------------------- strings

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
"""An id from another system (data source, run, job, agent, row, ...): printable, no spaces."""
NumericId = Annotated[str, StringConstraints(min_length=1, max_length=20, pattern=r"^[0-9]+$")]
"""A Databricks numeric id (job id, run id) carried as a string."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=1000)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
EntityName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
"""An MCP entity type such as `employees` or `payroll`."""
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]
JobKey = Annotated[str, StringConstraints(pattern=JOB_KEY_PATTERN)]
TaskKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
ParamValue = Annotated[str, StringConstraints(max_length=10_000)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=127, pattern=r"^[A-Za-z0-9_.:/=+@-]+$")]
TagValue = Annotated[str, StringConstraints(max_length=255)]
EndpointName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
StateName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z0-9_]*$")]
"""A Databricks state or code (`TERMINATED`, `SUCCESS`, ...): kept open so a new Databricks value is no error."""
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")]


def _workspace_path(value: str) -> str:
    if any(part == ".." for part in value.split("/")):
        raise ValueError("a path must not contain '..' segments")
    return value


WorkspacePath = Annotated[
    str,
    StringConstraints(min_length=2, max_length=1024, pattern=r"^/[^\s\x00]+$"),
    AfterValidator(_workspace_path),
]
"""An absolute workspace or volume path (`/Workspace/...`, `/Volumes/...`), no `..`."""

# ---------------------------------------------------------------- cron and timezones


def _quartz(value: str) -> str:
    return validate_quartz_cron(value)


QuartzCron = Annotated[
    str,
    StringConstraints(min_length=11, max_length=200),
    AfterValidator(_quartz),
]


def _timezone(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-/]{0,63}", value) or value.lower() == "localtime":
        raise ValueError(f"{value[:80]!r} is not an IANA timezone name (e.g. 'America/Los_Angeles', 'UTC')")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value[:80]!r} is not an IANA timezone name (e.g. 'America/Los_Angeles', 'UTC')") from None
    return value


TimezoneName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    AfterValidator(_timezone),
]

# ---------------------------------------------------------------- free-form JSON

MAX_JSON_BYTES: Final = 16_384


def bounded_json(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """At most `MAX_JSON_BYTES` serialised, and only finite numbers (NaN and Infinity are not JSON)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise ValueError("NaN and Infinity are not JSON numbers") from None
    size = len(text.encode())
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{size} bytes of JSON, more than the {MAX_JSON_BYTES} allowed")
    return value


JsonObject = Annotated[dict[str, JsonValue], Field(max_length=100), AfterValidator(bounded_json)]
"""A free-form JSON object: at most 100 keys and 16 KiB serialised."""


class Schedule(ContractModel):
    """A Databricks job schedule: Quartz cron plus an IANA timezone."""

    quartz_cron_expression: QuartzCron
    timezone_id: TimezoneName = "UTC"
    pause_status: Literal["PAUSED", "UNPAUSED"] = "UNPAUSED"
