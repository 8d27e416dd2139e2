"""The billing sampler: `system.billing.usage` net of retractions, at list price, per tenant, day and SKU.

One Statement Execution query per cycle sums `usage_quantity` over *all* record types (RETRACTION rows are
negative, RESTATEMENT rows restate) for the last `sample_days` usage days, grouped by tenant tag, agent tag,
job, endpoint, day, SKU and the list price valid at the usage's start (`pricing.effective_list.default`).
Dollars are computed here in `Decimal` (quantity x price), never in floats. A row without an `ap_tenant_id`
tag is attributed through the job -> tenant map (from `run.finished`) or the endpoint -> tenant map (from
serving's events and tagged serving usage). Each (tenant, day, SKU) whose total changed is published as
`cost.sampled` through the outbox at the next `revision` (a new deterministic id); unchanged ones are not.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import structlog
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import Disposition, Format, StatementParameterListItem, StatementState
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import CostSampled
from apev_contracts.envelope import new_event
from apev_contracts.ids import cost_sample_id
from apev_monitor import tables
from apev_monitor.metrics import Metrics
from apev_monitor.store import upsert
from apev_runtime import outbox
from apev_runtime.databricks import DatabricksClients
from apev_runtime.db.engine import Database

log = structlog.get_logger("apev.monitor.billing")

SOURCE = "/apev/monitor/billing"
PLACES = Decimal("0.000001")  # the contract's money and DBU precision

USAGE_SQL = """
SELECT u.custom_tags['ap_tenant_id'] AS tenant_id,
       u.custom_tags['ap_agent_id'] AS agent_id,
       u.usage_metadata.job_id AS job_id,
       u.usage_metadata.endpoint_name AS endpoint_name,
       CAST(u.usage_date AS STRING) AS usage_date,
       u.sku_name AS sku_name,
       p.currency_code AS currency_code,
       CAST(p.pricing.effective_list.default AS STRING) AS price,
       CAST(SUM(u.usage_quantity) AS STRING) AS quantity,
       MIN(u.usage_start_time) AS window_start,
       MAX(u.usage_end_time) AS window_end
FROM system.billing.usage u
JOIN system.billing.list_prices p
  ON u.sku_name = p.sku_name AND u.cloud = p.cloud AND u.usage_unit = p.usage_unit
 AND u.usage_start_time >= p.price_start_time
 AND (p.price_end_time IS NULL OR u.usage_start_time < p.price_end_time)
WHERE u.usage_date >= :since
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""


@dataclass
class _Sum:
    dbus: Decimal = Decimal(0)
    dollars: Decimal = Decimal(0)
    start: datetime | None = None
    end: datetime | None = None
    currency: str = "USD"

    def add(self, dbus: Decimal, dollars: Decimal, start: datetime, end: datetime) -> None:
        self.dbus += dbus
        self.dollars += dollars
        self.start = start if self.start is None else min(self.start, start)
        self.end = end if self.end is None else max(self.end, end)


@dataclass
class SampleResult:
    published: list[CostSampled] = field(default_factory=list)
    unchanged: int = 0
    unattributed_dollars: Decimal = Decimal(0)


def _ts(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def query_usage(w: WorkspaceClient, warehouse_id: str | None, since: date) -> list[dict[str, Any]]:
    """Run the usage query (in a worker thread: the SDK is synchronous) and return its rows as dicts."""
    warehouse = warehouse_id or _first_running_warehouse(w)
    response = w.statement_execution.execute_statement(
        statement=USAGE_SQL,
        warehouse_id=warehouse,
        parameters=[StatementParameterListItem(name="since", value=since.isoformat(), type="DATE")],
        wait_timeout="30s",
        disposition=Disposition.INLINE,
        format=Format.JSON_ARRAY,
    )
    deadline = time.monotonic() + 300
    while response.status and response.status.state in (StatementState.PENDING, StatementState.RUNNING):
        if time.monotonic() > deadline:
            raise TimeoutError("the usage statement did not finish within 300 s")
        time.sleep(0.5)
        assert response.statement_id is not None
        response = w.statement_execution.get_statement(response.statement_id)
    state = response.status.state if response.status else None
    if state != StatementState.SUCCEEDED:
        error = response.status.error if response.status else None
        raise RuntimeError(f"usage statement {state}: {error.message if error else 'no error given'}")
    assert response.manifest is not None and response.manifest.schema is not None
    names = [c.name or "" for c in response.manifest.schema.columns or []]
    data = list(response.result.data_array or []) if response.result else []
    chunk = response.result.next_chunk_index if response.result else None
    while chunk is not None:
        assert response.statement_id is not None
        part = w.statement_execution.get_statement_result_chunk_n(response.statement_id, chunk)
        data += part.data_array or []
        chunk = part.next_chunk_index
    return [dict(zip(names, row, strict=True)) for row in data]


def _first_running_warehouse(w: WorkspaceClient) -> str:
    warehouses = list(w.warehouses.list())
    for wh in warehouses:
        if wh.state is not None and wh.state.value == "RUNNING" and wh.id:
            return wh.id
    if warehouses and warehouses[0].id:
        return warehouses[0].id
    raise RuntimeError("no SQL warehouse in the workspace (set DATABRICKS_WAREHOUSE_ID)")


class BillingSampler:
    def __init__(
        self, db: Database, clients: DatabricksClients, metrics: Metrics, *, warehouse_id: str | None, days: int
    ) -> None:
        self.db = db
        self.clients = clients
        self.metrics = metrics
        self.warehouse_id = warehouse_id
        self.days = days

    async def sample(self, now: datetime) -> SampleResult:
        since, rows = await self._usage(now)
        async with self.db.transaction() as tx:
            return await self.apply(tx, rows, since, now)

    async def sample_in(self, tx: AsyncConnection, now: datetime) -> SampleResult:
        """One sample on the caller's transaction (a handler's: its outbox rows commit with its inbox row)."""
        await tx.commit()  # no transaction open while the warehouse answers
        since, rows = await self._usage(now)
        return await self.apply(tx, rows, since, now)

    async def _usage(self, now: datetime) -> tuple[date, list[dict[str, Any]]]:
        since = now.date() - timedelta(days=self.days - 1)
        try:
            return since, await self.clients.call(lambda w: query_usage(w, self.warehouse_id, since))
        except Exception as exc:
            self.metrics.api_errors.labels("databricks", type(exc).__name__).inc()
            raise

    async def apply(self, tx: AsyncConnection, rows: list[dict[str, Any]], since: date, now: datetime) -> SampleResult:
        jobs: dict[str, Any] = {r.job_id: r for r in await tx.execute(select(tables.jobs))}
        endpoints: dict[str, Any] = {r.endpoint_name: r for r in await tx.execute(select(tables.endpoints))}
        # Tagged serving usage teaches endpoint -> tenant (and agent) for the untagged rows.
        for row in rows:
            known = endpoints.get(row["endpoint_name"]) if row["endpoint_name"] else None
            learned = known is None or (row["agent_id"] and known.agent_id != row["agent_id"])
            if row["endpoint_name"] and row["tenant_id"] and learned:
                values = {"tenant_id": row["tenant_id"], "agent_id": row["agent_id"], "updated_at": now}
                await upsert(tx, tables.endpoints, {"endpoint_name": row["endpoint_name"]}, values)
                endpoints[row["endpoint_name"]] = _Owner(row["tenant_id"], row["agent_id"])
        per_key: dict[tuple[str, date, str], _Sum] = defaultdict(_Sum)
        per_agent: dict[tuple[str, str, date], _Sum] = defaultdict(_Sum)
        result = SampleResult()
        for row in rows:
            quantity, price = Decimal(row["quantity"]), Decimal(row["price"])
            dollars = quantity * price
            owner = jobs.get(row["job_id"]) or endpoints.get(row["endpoint_name"])
            tenant = row["tenant_id"] or (owner.tenant_id if owner else None)
            agent = row["agent_id"] or (owner.agent_id if owner else None)
            if not tenant:
                result.unattributed_dollars += dollars
                continue
            day = date.fromisoformat(row["usage_date"])
            start, end = _ts(row["window_start"]), _ts(row["window_end"])
            cell = per_key[(tenant, day, row["sku_name"])]
            cell.add(quantity, dollars, start, end)
            cell.currency = row["currency_code"] or "USD"
            if agent:
                per_agent[(tenant, agent, day)].add(quantity, dollars, start, end)
        stored = {
            (r.tenant_id, r.usage_date, r.sku): r
            for r in await tx.execute(select(tables.cost_samples).where(tables.cost_samples.c.usage_date >= since))
        }
        for (tenant, day, sku), cell in sorted(per_key.items()):
            dbus = max(cell.dbus, Decimal(0)).quantize(PLACES, ROUND_HALF_EVEN)
            dollars = max(cell.dollars, Decimal(0)).quantize(PLACES, ROUND_HALF_EVEN)
            old = stored.get((tenant, day, sku))
            if old is not None and Decimal(old.dbus) == dbus and Decimal(old.dollars) == dollars:
                result.unchanged += 1
                continue
            revision = 0 if old is None else old.revision + 1
            assert cell.start is not None and cell.end is not None
            end = cell.end if cell.end > cell.start else cell.start + timedelta(microseconds=1)
            sample = CostSampled(
                tenant_id=tenant,
                usage_date=day,
                sku=sku,
                dbus=dbus,
                dollars=dollars,
                currency=cell.currency,
                revision=revision,
                window_start=cell.start,
                window_end=end,
            )
            event_id = cost_sample_id(tenant, day, sku, revision)
            await outbox.add(tx, new_event(sample, tenant_id=tenant, source=SOURCE, id=event_id))
            await store_sample(tx, sample, event_id, now)
            result.published.append(sample)
            self.metrics.cost_samples.inc()
        for (tenant, agent, day), cell in per_agent.items():
            await upsert(
                tx,
                tables.agent_costs,
                {"tenant_id": tenant, "agent_id": agent, "usage_date": day},
                {"dbus": cell.dbus, "dollars": cell.dollars, "updated_at": now},
            )
        for (tenant, day), (dbus, dollars) in _daily(per_key).items():
            self.metrics.dbus.labels(tenant, day.isoformat()).set(float(dbus))
            self.metrics.dollars.labels(tenant, day.isoformat()).set(float(dollars))
        self.metrics.unattributed.set(float(result.unattributed_dollars))
        log.info(
            "cost_sampled",
            rows=len(rows),
            published=len(result.published),
            unchanged=result.unchanged,
            unattributed_dollars=str(result.unattributed_dollars),
        )
        return result


@dataclass
class _Owner:
    tenant_id: str
    agent_id: str | None


def _daily(per_key: dict[tuple[str, date, str], _Sum]) -> dict[tuple[str, date], tuple[Decimal, Decimal]]:
    out: dict[tuple[str, date], tuple[Decimal, Decimal]] = {}
    for (tenant, day, _), cell in per_key.items():
        dbus, dollars = out.get((tenant, day), (Decimal(0), Decimal(0)))
        out[(tenant, day)] = (dbus + cell.dbus, dollars + cell.dollars)
    return out


async def store_sample(tx: AsyncConnection, sample: CostSampled, event_id: str, now: datetime) -> bool:
    """Keep the newest revision of a (tenant, day, SKU); an older or equal revision changes nothing."""
    c = tables.cost_samples.c
    key = {"tenant_id": sample.tenant_id, "usage_date": sample.usage_date, "sku": sample.sku}
    old = (
        await tx.execute(
            select(c.revision).where(
                c.tenant_id == sample.tenant_id, c.usage_date == sample.usage_date, c.sku == sample.sku
            )
        )
    ).first()
    if old is not None and old.revision >= sample.revision:
        return False
    values = {
        "dbus": sample.dbus,
        "dollars": sample.dollars,
        "currency": sample.currency,
        "revision": sample.revision,
        "event_id": event_id,
        "window_start": sample.window_start,
        "window_end": sample.window_end,
        "updated_at": now,
    }
    await upsert(tx, tables.cost_samples, key, values)
    return True
