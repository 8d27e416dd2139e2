"""The usage ledger without HTTP: what ran, priced in DBUs, and the corrections Databricks publishes later.

Rows are written from real execution: every task attempt's execution time (jobs), statement time per SQL
warehouse (the union of its statements' intervals, as a warehouse bills while busy), and the time each served
entity's worker process is up (model serving). Like Databricks' own records, a row never spans an hour
boundary. Record ids are derived from what caused the row, so recording the same thing twice writes nothing.

`billing_tables()` hands both system tables (column names with Databricks types, and rows as Python values) to
the SQL engine, which serves them as `system.billing.usage` and `system.billing.list_prices`.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from apev_workspace.billing import rates
from apev_workspace.billing.exceptions import InvalidParameterValue
from apev_workspace.core.store import Store

if TYPE_CHECKING:
    from apev_workspace.jobs.models import Jobs

HOUR_MS = 3_600_000
QUANTUM = Decimal("1e-18")  # usage_quantity is decimal(38,18)
_NS = uuid.UUID("5b0c5c2e-3c1d-4d8e-9a57-6f5d0f1b7a11")  # namespace of deterministic record ids
KIND = "billing_usage"
CLOUD = "AWS"

USAGE_METADATA_FIELDS = (
    "cluster_id",
    "job_id",
    "warehouse_id",
    "instance_pool_id",
    "node_type",
    "job_run_id",
    "notebook_id",
    "dlt_pipeline_id",
    "endpoint_name",
    "endpoint_id",
    "dlt_update_id",
    "dlt_maintenance_id",
    "run_name",
    "job_name",
    "notebook_path",
    "budget_policy_id",
)
IDENTITY_FIELDS = ("run_as", "owned_by", "created_by")
PRODUCT_FEATURE_FIELDS = ("jobs_tier", "sql_tier", "serving_type", "is_serverless", "is_photon")


def _struct(fields: tuple[str, ...], kind: str = "STRING") -> str:
    return "STRUCT<" + ", ".join(f"{f}: {'BOOLEAN' if f.startswith('is_') else kind}" for f in fields) + ">"


USAGE_COLUMNS: list[tuple[str, str]] = [
    ("record_id", "STRING"),
    ("account_id", "STRING"),
    ("workspace_id", "STRING"),
    ("sku_name", "STRING"),
    ("cloud", "STRING"),
    ("usage_start_time", "TIMESTAMP"),
    ("usage_end_time", "TIMESTAMP"),
    ("usage_date", "DATE"),
    ("custom_tags", "MAP<STRING, STRING>"),
    ("usage_unit", "STRING"),
    ("usage_quantity", "DECIMAL(38,18)"),
    ("usage_metadata", _struct(USAGE_METADATA_FIELDS)),
    ("identity_metadata", _struct(IDENTITY_FIELDS)),
    ("record_type", "STRING"),
    ("ingestion_date", "DATE"),
    ("billing_origin_product", "STRING"),
    ("product_features", _struct(PRODUCT_FEATURE_FIELDS)),
    ("usage_type", "STRING"),
]
LIST_PRICE_COLUMNS: list[tuple[str, str]] = [
    ("price_start_time", "TIMESTAMP"),
    ("price_end_time", "TIMESTAMP"),
    ("account_id", "STRING"),
    ("sku_name", "STRING"),
    ("cloud", "STRING"),
    ("currency_code", "STRING"),
    ("usage_unit", "STRING"),
    (
        "pricing",
        "STRUCT<default: DECIMAL(30,18), promotional: STRUCT<default: DECIMAL(30,18)>, "
        "effective_list: STRUCT<default: DECIMAL(30,18)>>",
    ),
]


@dataclass
class Table:
    """One system table: `(name, Databricks type)` columns and rows as dicts of Python values."""

    name: str  # e.g. "system.billing.usage"
    columns: list[tuple[str, str]]
    rows: list[dict[str, Any]]


Moment = datetime | int  # an aware datetime, or epoch milliseconds


def to_ms(moment: Moment) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise InvalidParameterValue("Billing times must be timezone-aware")
        return int(moment.timestamp() * 1000)
    return int(moment)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def split_hours(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start, end) cut at hour boundaries, as Databricks' hourly usage records are."""
    pieces = []
    cursor = start_ms
    while cursor < end_ms:
        boundary = (cursor // HOUR_MS + 1) * HOUR_MS
        pieces.append((cursor, min(boundary, end_ms)))
        cursor = boundary
    return pieces


def subtract(interval: tuple[int, int], taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `interval` not covered by any of `taken`."""
    parts = [interval]
    for t_start, t_end in taken:
        parts = [
            piece
            for p_start, p_end in parts
            for piece in ((p_start, min(p_end, t_start)), (max(p_start, t_end), p_end))
            if piece[0] < piece[1]
        ]
    return parts


class Billing:
    def __init__(self, store: Store, *, workspace_id: str, account_id: str | None = None) -> None:
        self._store = store
        self._lock = threading.RLock()
        self.workspace_id = workspace_id
        self.account_id = account_id or str(uuid.uuid5(_NS, f"account/{workspace_id}"))
        self.rows: dict[str, dict[str, Any]] = store.load(KIND)
        self._busy: dict[str, list[tuple[int, int]]] = {}  # warehouse id -> billed statement intervals
        self.jobs: Jobs | None = None  # wired by the workspace, for job names and tags
        # Called before the tables are read, so time still accruing (an endpoint that is up) is written.
        self.flushers: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ writing usage
    def _record(
        self,
        cause: str,
        start_ms: int,
        end_ms: int,
        *,
        sku: str,
        rate: Decimal,
        product: str,
        tags: dict[str, str] | None,
        usage_metadata: dict[str, Any],
        identity: dict[str, Any],
        features: dict[str, Any],
    ) -> list[dict[str, Any]]:
        written = []
        with self._lock:
            for piece_start, piece_end in split_hours(start_ms, end_ms):
                record_id = str(uuid.uuid5(_NS, f"{cause}/{piece_start}"))
                if record_id in self.rows:
                    continue
                quantity = (Decimal(piece_end - piece_start) / Decimal(HOUR_MS) * rate).quantize(QUANTUM)
                row = {
                    "record_id": record_id,
                    "account_id": self.account_id,
                    "workspace_id": self.workspace_id,
                    "sku_name": sku,
                    "cloud": CLOUD,
                    "usage_start_time": _iso(piece_start),
                    "usage_end_time": _iso(piece_end),
                    "usage_date": datetime.fromtimestamp(piece_start / 1000, UTC).date().isoformat(),
                    "custom_tags": {str(k): str(v) for k, v in (tags or {}).items()},
                    "usage_unit": "DBU",
                    "usage_quantity": str(quantity),
                    "usage_metadata": {f: _str_or_none(usage_metadata.get(f)) for f in USAGE_METADATA_FIELDS},
                    "identity_metadata": {f: identity.get(f) for f in IDENTITY_FIELDS},
                    "record_type": "ORIGINAL",
                    "ingestion_date": _today(),
                    "billing_origin_product": product,
                    "product_features": {f: features.get(f) for f in PRODUCT_FEATURE_FIELDS},
                    "usage_type": "COMPUTE_TIME",
                }
                self.rows[record_id] = row
                self._store.put(KIND, record_id, row)
                written.append(row)
        return written

    def on_run_event(self, event: str, run: dict[str, Any]) -> None:
        """Executor listener: when a run finishes, each task attempt's execution time becomes JOBS usage."""
        if event != "run.finished":
            return
        job = self.jobs.jobs.get(run["job_id"]) if self.jobs is not None and run.get("job_id") is not None else None
        settings = job["settings"] if job else {}
        for task in run["tasks"]:
            for attempt in [*task.get("previous_attempts", []), task]:
                self.record_task(run, attempt, job_name=settings.get("name"), tags=settings.get("tags"))

    def record_task(
        self, run: dict[str, Any], task: dict[str, Any], *, job_name: str | None, tags: dict[str, str] | None
    ) -> list[dict[str, Any]]:
        start, end = task.get("start_time") or 0, task.get("end_time") or 0
        if not start or end <= start:
            return []  # never executed (skipped, excluded, upstream failed)
        return self._record(
            f"jobs/{task['run_id']}",
            start,
            end,
            sku=rates.JOBS_SKU,
            rate=rates.JOBS_DBU_PER_HOUR,
            product="JOBS",
            tags=tags,
            usage_metadata={
                "job_id": run.get("job_id"),
                "job_run_id": run["run_id"],
                "run_name": run.get("run_name"),
                "job_name": job_name,
            },
            identity={"run_as": (run.get("run_as") or {}).get("name"), "created_by": run.get("creator_user_name")},
            features={"jobs_tier": "CLASSIC", "is_serverless": False, "is_photon": False},
        )

    def record_statement(
        self,
        warehouse_id: str,
        started: Moment,
        ended: Moment,
        tags: dict[str, str] | None = None,
        *,
        cluster_size: str = rates.DEFAULT_WAREHOUSE_SIZE,
        run_as: str | None = None,
    ) -> list[dict[str, Any]]:
        """A statement ran on a warehouse from `started` to `ended`: bill the part no other statement covered.

        Called by the statement executor once a statement ends (any final state). `tags` are the warehouse's
        custom tags. Overlapping statements on one warehouse bill once, as a warehouse bills while it is busy.
        """
        rate = rates.SQL_DBU_PER_HOUR.get(cluster_size)
        if rate is None:
            raise InvalidParameterValue(
                f"Unknown warehouse size {cluster_size!r}: one of {list(rates.SQL_DBU_PER_HOUR)}"
            )
        start_ms, end_ms = to_ms(started), to_ms(ended)
        written: list[dict[str, Any]] = []
        with self._lock:
            taken = self._busy.setdefault(warehouse_id, [])
            horizon = end_ms - 2 * 24 * HOUR_MS
            taken[:] = [t for t in taken if t[1] > horizon]
            for piece_start, piece_end in subtract((start_ms, end_ms), taken):
                taken.append((piece_start, piece_end))
                written += self._record(
                    f"sql/{warehouse_id}/{piece_start}",
                    piece_start,
                    piece_end,
                    sku=rates.SQL_SKU,
                    rate=rate,
                    product="SQL",
                    tags=tags,
                    usage_metadata={"warehouse_id": warehouse_id},
                    identity={"run_as": run_as},
                    features={"sql_tier": "PRO", "is_serverless": False, "is_photon": True},
                )
        return written

    def record_serving(
        self,
        endpoint: dict[str, Any],
        entity_name: str,
        workload_size: str,
        started: Moment,
        ended: Moment,
    ) -> list[dict[str, Any]]:
        """A served entity's worker was up (scaled up) from `started` to `ended`."""
        start_ms, end_ms = to_ms(started), to_ms(ended)
        return self._record(
            f"serving/{endpoint['id']}/{entity_name}/{start_ms}",
            start_ms,
            end_ms,
            sku=rates.SERVING_SKU,
            rate=rates.SERVING_DBU_PER_HOUR.get(workload_size, rates.SERVING_DBU_PER_HOUR["Small"]),
            product="MODEL_SERVING",
            tags={t["key"]: t.get("value") or "" for t in endpoint.get("tags") or []},
            usage_metadata={"endpoint_name": endpoint["name"], "endpoint_id": endpoint["id"]},
            identity={"created_by": endpoint.get("creator")},
            features={"serving_type": "MODEL", "is_serverless": True, "is_photon": False},
        )

    # ------------------------------------------------------------------ corrections
    def correct(
        self,
        usage_date: str,
        factor: Decimal | str | int = 1,
        *,
        sku_name: str | None = None,
        billing_origin_product: str | None = None,
        custom_tags: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Correct a past day as Databricks does: retract each live row (a negative RETRACTION copy) and
        publish a RESTATEMENT with the corrected quantity (`factor` times the retracted one). Repeating it corrects
        the restatements. Returns the rows written."""
        try:
            day = date.fromisoformat(usage_date).isoformat()
            multiplier = Decimal(str(factor))
        except (TypeError, ValueError, InvalidOperation):
            raise InvalidParameterValue(
                f"A correction needs usage_date as YYYY-MM-DD and a decimal factor, got {usage_date!r}, {factor!r}"
            ) from None
        if multiplier < 0:
            raise InvalidParameterValue(f"factor must be >= 0, got {factor}")
        for flush in self.flushers:
            flush()
        written = []
        with self._lock:
            live = [
                r
                for r in self.rows.values()
                if r["usage_date"] == day
                and r["record_type"] in ("ORIGINAL", "RESTATEMENT")
                and not r.get("_retracted")
                and (sku_name is None or r["sku_name"] == sku_name)
                and (billing_origin_product is None or r["billing_origin_product"] == billing_origin_product)
                and all(r["custom_tags"].get(k) == v for k, v in (custom_tags or {}).items())
            ]
            for row in sorted(live, key=lambda r: (r["usage_start_time"], r["record_id"])):
                quantity = Decimal(row["usage_quantity"])
                for record_type, amount in (("RETRACTION", -quantity), ("RESTATEMENT", quantity * multiplier)):
                    fresh = copy.deepcopy({k: v for k, v in row.items() if not k.startswith("_")})
                    fresh.update(
                        record_id=str(uuid.uuid4()),
                        record_type=record_type,
                        usage_quantity=str(amount.quantize(QUANTUM)),
                        ingestion_date=_today(),
                    )
                    self.rows[fresh["record_id"]] = fresh
                    self._store.put(KIND, fresh["record_id"], fresh)
                    written.append(fresh)
                row["_retracted"] = True
                self._store.put(KIND, row["record_id"], row)
        return written

    # ------------------------------------------------------------------ reading
    def billing_tables(self) -> dict[str, Table]:
        """Both billing system tables, keyed `usage` and `list_prices`, with Databricks column types."""
        for flush in self.flushers:
            flush()
        with self._lock:
            usage = [
                _usage_row(r) for r in sorted(self.rows.values(), key=lambda r: (r["usage_start_time"], r["record_id"]))
            ]
        return {
            "usage": Table("system.billing.usage", list(USAGE_COLUMNS), usage),
            "list_prices": Table("system.billing.list_prices", list(LIST_PRICE_COLUMNS), self._price_rows()),
        }

    def _price_rows(self) -> list[dict[str, Any]]:
        start = datetime.fromisoformat(rates.PRICE_START)
        return [
            {
                "price_start_time": start,
                "price_end_time": None,
                "account_id": self.account_id,
                "sku_name": sku,
                "cloud": CLOUD,
                "currency_code": "USD",
                "usage_unit": "DBU",
                "pricing": {"default": price, "promotional": {"default": price}, "effective_list": {"default": price}},
            }
            for sku, price in sorted(rates.LIST_PRICE_USD_PER_DBU.items())
        ]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _usage_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in row.items() if not k.startswith("_")}
    out["usage_start_time"] = datetime.fromisoformat(row["usage_start_time"])
    out["usage_end_time"] = datetime.fromisoformat(row["usage_end_time"])
    out["usage_date"] = date.fromisoformat(row["usage_date"])
    out["ingestion_date"] = date.fromisoformat(row["ingestion_date"])
    out["usage_quantity"] = Decimal(row["usage_quantity"])
    return out


def jsonable(table: Table) -> dict[str, Any]:
    """A table as JSON (decimals and times as strings), for the admin read endpoint."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    return {"name": table.name, "columns": [list(c) for c in table.columns], "rows": [plain(r) for r in table.rows]}
