"""What each rule kind observes at one instant: the label sets whose condition holds now, with a value and a
summary. Reads only the monitor's own tables (and the DLQ offset snapshots); the state machine is elsewhere."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts.events.serving import quantile_ms
from apev_monitor import tables
from apev_monitor.rules import (
    CostAnomalyParams,
    CostPer1kParams,
    DailyDbuBudgetParams,
    DataFreshnessParams,
    DlqGrowthParams,
    EndpointLatencyParams,
    JobFailuresParams,
    Rule,
)
from apev_monitor.tenants import Tenants


@dataclass(frozen=True)
class Observation:
    labels: dict[str, str]
    value: str
    summary: str
    link: str | None = None


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def observe(conn: AsyncConnection, rule: Rule, params: Any, now: datetime, tenants: Tenants) -> list[Observation]:
    kind = rule.kind
    if kind == "job_failures":
        return await job_failures(conn, params, now)
    if kind == "daily_dbu_budget":
        return await daily_dbu_budget(conn, params, now, tenants)
    if kind == "endpoint_latency":
        return await endpoint_latency(conn, params, now)
    if kind == "dlq_growth":
        return await dlq_growth(conn, params, now)
    if kind == "data_freshness":
        return await data_freshness(conn, params, now, tenants)
    if kind == "cost_per_1k_invocations":
        return [o for o in await cost_per_1k(conn, params, now) if o is not None]
    if kind == "cost_anomaly":
        return await cost_anomaly(conn, params, now)
    raise ValueError(f"unknown rule kind {kind!r}")


async def job_failures(conn: AsyncConnection, p: JobFailuresParams, now: datetime) -> list[Observation]:
    since = now - timedelta(seconds=p.window)
    rows = (
        await conn.execute(
            select(tables.runs)
            .where(tables.runs.c.end_time > since, tables.runs.c.end_time <= now)
            .order_by(tables.runs.c.end_time, tables.runs.c.run_id)
        )
    ).all()
    per_job: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        per_job[(row.tenant_id, row.job_id)].append(row)
    found = []
    for (tenant, job_id), runs in per_job.items():
        failures: list[Any] = []
        for run in runs:  # only failures after the latest success count: a success resolves
            if run.outcome == "success":
                failures = []
            elif run.outcome in p.outcomes:
                failures.append(run)
        if len(failures) >= p.threshold:
            last = failures[-1]
            found.append(
                Observation(
                    {"tenant_id": tenant, "job_id": job_id},
                    str(len(failures)),
                    f"Job {last.job_name} (job {job_id}) failed {len(failures)} times within "
                    f"{_span(p.window)}; last run {last.run_id}: {last.outcome}",
                    last.run_page_url,
                )
            )
    return found


async def _daily_dbus(conn: AsyncConnection, first_day: date) -> dict[tuple[str, date], tuple[Decimal, Decimal]]:
    c = tables.cost_samples.c
    rows = (
        await conn.execute(
            select(c.tenant_id, c.usage_date, func.sum(c.dbus), func.sum(c.dollars))
            .where(c.usage_date >= first_day)
            .group_by(c.tenant_id, c.usage_date)
        )
    ).all()
    return {(r[0], r[1]): (Decimal(r[2]), Decimal(r[3])) for r in rows}


async def daily_dbu_budget(
    conn: AsyncConnection, p: DailyDbuBudgetParams, now: datetime, tenants: Tenants
) -> list[Observation]:
    found = []
    for (tenant, day), (dbus, dollars) in (await _daily_dbus(conn, now.date() - timedelta(days=p.days - 1))).items():
        budget = tenants.get(tenant).daily_dbu_budget
        budget = budget if budget is not None else p.default_budget
        if budget is None or day > now.date():
            continue
        limit = budget * p.factor
        if dbus > limit:
            found.append(
                Observation(
                    {"tenant_id": tenant, "usage_date": day.isoformat()},
                    str(dbus),
                    f"Tenant {tenant} used {dbus.normalize()} DBUs (${dollars.quantize(Decimal('0.01'))}) on "
                    f"{day.isoformat()}, over {p.factor} x its daily budget of {budget} DBUs",
                )
            )
    return found


async def endpoint_latency(conn: AsyncConnection, p: EndpointLatencyParams, now: datetime) -> list[Observation]:
    c = tables.latency.c
    since = now - timedelta(seconds=p.window)
    rows = (await conn.execute(select(tables.latency).where(c.window_end > since, c.window_end <= now))).all()
    merged: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        key = (row.tenant_id, row.endpoint_name)
        acc = merged.setdefault(key, [0] * len(row.buckets))
        for i, n in enumerate(row.buckets):
            acc[i] += int(n)
    found = []
    for (tenant, endpoint), buckets in merged.items():
        if sum(buckets) < p.min_count:
            continue
        q = quantile_ms(buckets, p.quantile)
        if q is not None and q > p.threshold_ms:
            found.append(
                Observation(
                    {"tenant_id": tenant, "endpoint_name": endpoint},
                    str(q),
                    f"Endpoint {endpoint}: p{round(p.quantile * 100)} latency {q:g} ms over the last "
                    f"{_span(p.window)} ({sum(buckets)} invocations), above {p.threshold_ms:g} ms",
                )
            )
    return found


async def dlq_growth(conn: AsyncConnection, p: DlqGrowthParams, now: datetime) -> list[Observation]:
    c = tables.dlq_offsets.c
    since = now - timedelta(seconds=p.window)
    rows = (await conn.execute(select(tables.dlq_offsets).where(c.at <= now).order_by(c.topic, c.at))).all()
    per_topic: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        per_topic[row.topic].append(row)
    found = []
    for topic, snaps in per_topic.items():
        # Baseline: the last snapshot at or before the window's start, else the oldest one in it.
        before = [s for s in snaps if aware(s.at) <= since]
        base = before[-1] if before else snaps[0]
        growth = snaps[-1].end_offset - base.end_offset
        if growth >= p.threshold:
            found.append(
                Observation(
                    {"topic": topic},
                    str(growth),
                    f"{growth} new dead letters on {topic} within {_span(p.window)}",
                )
            )
    return found


async def data_freshness(
    conn: AsyncConnection, p: DataFreshnessParams, now: datetime, tenants: Tenants
) -> list[Observation]:
    c = tables.runs.c
    rows = (
        await conn.execute(
            select(c.tenant_id, c.datasource_id, c.outcome, func.min(c.end_time), func.max(c.end_time))
            .where(c.kind == "ingest", c.datasource_id.is_not(None))
            .group_by(c.tenant_id, c.datasource_id, c.outcome)
        )
    ).all()
    first: dict[tuple[str, str], datetime] = {}
    success: dict[tuple[str, str], datetime] = {}
    for tenant, ds, outcome, earliest, latest in rows:
        key = (tenant, ds)
        first[key] = min(first.get(key, aware(earliest)), aware(earliest))
        if outcome == "success":
            success[key] = aware(latest)
    found = []
    for key, seen in first.items():
        tenant, ds = key
        budget = tenants.get(tenant).freshness_for(ds, p.default_minutes)
        since = success.get(key, seen)
        age = now - since
        if age > timedelta(minutes=budget):
            what = "last successful ingest" if key in success else "first ingest run (never succeeded)"
            found.append(
                Observation(
                    {"tenant_id": tenant, "datasource_id": ds},
                    str(round(age.total_seconds())),
                    f"Data source {ds} of tenant {tenant} is stale: {what} {age.total_seconds() / 60:.0f} min "
                    f"ago, budget {budget} min",
                )
            )
    return found


async def agent_cost_table(
    conn: AsyncConnection, first_day: date, last_day: date, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """Per (tenant, agent): dollars of its endpoint and insights jobs, invocations of its endpoints, and
    dollars per 1,000 invocations (None without invocations), over usage days first_day..last_day."""
    a = tables.agent_costs.c
    query = (
        select(a.tenant_id, a.agent_id, func.sum(a.dollars), func.sum(a.dbus))
        .where(a.usage_date >= first_day, a.usage_date <= last_day)
        .group_by(a.tenant_id, a.agent_id)
    )
    if tenant_id is not None:
        query = query.where(a.tenant_id == tenant_id)
    costs = {(r[0], r[1]): (Decimal(r[2]), Decimal(r[3])) for r in (await conn.execute(query)).all()}
    lat, ep = tables.latency.c, tables.endpoints.c
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    inv_query = (
        select(ep.tenant_id, ep.agent_id, func.sum(lat.count))
        .select_from(tables.latency.join(tables.endpoints, lat.endpoint_name == ep.endpoint_name))
        .where(ep.agent_id.is_not(None), lat.window_start >= start, lat.window_start < end)
        .group_by(ep.tenant_id, ep.agent_id)
    )
    if tenant_id is not None:
        inv_query = inv_query.where(ep.tenant_id == tenant_id)
    invocations = {(r[0], r[1]): int(r[2] or 0) for r in (await conn.execute(inv_query)).all()}
    out = []
    for key in sorted(set(costs) | set(invocations)):
        dollars, dbus = costs.get(key, (Decimal(0), Decimal(0)))
        count = invocations.get(key, 0)
        per_1k = dollars * 1000 / count if count else None
        out.append(
            {
                "tenant_id": key[0],
                "agent_id": key[1],
                "dollars": dollars,
                "dbus": dbus,
                "invocations": count,
                "dollars_per_1k": per_1k,
            }
        )
    return out


async def cost_per_1k(conn: AsyncConnection, p: CostPer1kParams, now: datetime) -> list[Observation | None]:
    today = now.date()
    found: list[Observation | None] = []
    for row in await agent_cost_table(conn, today - timedelta(days=p.days - 1), today):
        per_1k = row["dollars_per_1k"]
        if per_1k is None or row["invocations"] < p.min_invocations or per_1k <= p.threshold_dollars:
            continue
        found.append(
            Observation(
                {"tenant_id": row["tenant_id"], "agent_id": row["agent_id"]},
                str(per_1k),
                f"Agent {row['agent_id']} of tenant {row['tenant_id']} costs ${per_1k:.4f} per 1,000 invocations "
                f"(${row['dollars']:.4f} over {row['invocations']} invocations), above ${p.threshold_dollars}",
            )
        )
    return found


def is_anomalous(history: list[Decimal], value: Decimal, p: CostAnomalyParams) -> tuple[bool, float]:
    """The documented method (see `CostAnomalyParams`): robust z-score against the tenant's own history."""
    if len(history) < p.min_history_days:
        return False, 0.0
    median = Decimal(statistics.median(history))
    mad = Decimal(statistics.median([abs(x - median) for x in history]))
    rise = value - median
    if rise < p.min_increase_dollars or rise < median * Decimal(str(p.min_relative_increase)):
        return False, 0.0
    if mad == 0:
        return True, float("inf")
    z = float(Decimal("0.6745") * rise / mad)
    return z > p.z_threshold, z


async def cost_anomaly(conn: AsyncConnection, p: CostAnomalyParams, now: datetime) -> list[Observation]:
    today = now.date()
    daily = await _daily_dbus(conn, today - timedelta(days=p.days - 1 + p.history_days))
    per_tenant: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for (tenant, day), (_, dollars) in daily.items():
        per_tenant[tenant][day] = dollars
    found = []
    for tenant, series in per_tenant.items():
        for back in range(p.days):
            day = today - timedelta(days=back)
            if day not in series:
                continue
            history = [
                series[d] for d in (day - timedelta(days=i) for i in range(1, p.history_days + 1)) if d in series
            ]
            anomalous, z = is_anomalous(history, series[day], p)
            if anomalous:
                median = Decimal(statistics.median(history))
                found.append(
                    Observation(
                        {"tenant_id": tenant, "usage_date": day.isoformat()},
                        str(series[day]),
                        f"Tenant {tenant} cost ${series[day]:.2f} on {day.isoformat()}, against a median of "
                        f"${median:.2f} over its previous {len(history)} days (robust z {z:.1f})",
                    )
                )
    return found


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
