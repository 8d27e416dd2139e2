from collections import Counter
from datetime import date, datetime
from decimal import Decimal

from apev_runtime.mcp import IntegrationRegistration


async def register(tenant, integration_type: str = "dentalintel") -> str:
    reg = await tenant.client.register_integration(
        IntegrationRegistration(integration_type=integration_type, datasource_id=f"ds-{integration_type}")
    )
    return reg.integration_id


async def test_paging_10000_records_returns_each_exactly_once(tenant, mcp_sim) -> None:
    integration_id = await register(tenant)
    ids: Counter[str] = Counter()
    pages = 0
    async for page in tenant.client.iter_pages(integration_id, "production_kpis", limit=1000):
        pages += 1
        ids.update(r["kpi_id"] for r in page.records)
    config = mcp_sim.backend.config
    expected = config.locations * config.days  # one production KPI row per location and day
    assert expected >= 10_000
    assert sum(ids.values()) == expected  # none missing
    assert max(ids.values()) == 1  # none twice
    assert pages == -(-sum(ids.values()) // 1000)


async def test_records_are_normalised_to_typed_lower_case_fields(tenant) -> None:
    integration_id = await register(tenant)
    page = await tenant.client.fetch_page(integration_id, "production_kpis", limit=5)
    record = page.records[0]
    assert all(key == key.lower() for key in record)
    assert isinstance(record["total_production"], Decimal)
    assert isinstance(record["patient_visits"], int)
    assert isinstance(record["kpi_date"], date)
    assert isinstance(record["updated_at"], datetime) and record["updated_at"].tzinfo is not None
    assert record["version"] == 1

    adp = await register(tenant, "adp")
    employee = (await tenant.client.fetch_page(adp, "employees", limit=1)).records[0]
    assert isinstance(employee["annual_salary"], Decimal)
    assert isinstance(employee["date_of_birth"], date)
    assert isinstance(employee["ssn_last_four"], str) and len(employee["ssn_last_four"]) == 4


async def test_incremental_fetch_after_a_tick_returns_only_changed_records(tenant, mcp_sim) -> None:
    integration_id = await register(tenant)
    first = [r async for r in tenant.client.iter_records(integration_id, "production_kpis")]
    watermark = max(r["updated_at"] for r in first)

    tick = mcp_sim.tick(tenant.code, ["production_kpis"], ratio=0.02)
    changed = tick["changed"][tenant.code]["production_kpis"]
    assert changed > 0

    delta = [r async for r in tenant.client.iter_records(integration_id, "production_kpis", updated_since=watermark)]
    assert len(delta) == changed
    assert len({r["kpi_id"] for r in delta}) == changed
    assert all(r["version"] == 2 and r["updated_at"] > watermark for r in delta)
    before = {r["kpi_id"]: r for r in first}
    assert any(r["total_production"] != before[r["kpi_id"]]["total_production"] for r in delta)

    # Nothing changed since the new watermark: an empty answer, not an error.
    later = max(r["updated_at"] for r in delta)
    assert [r async for r in tenant.client.iter_records(integration_id, "production_kpis", updated_since=later)] == []


async def test_cursor_paging_stays_complete_while_ticks_happen(tenant, mcp_sim) -> None:
    integration_id = await register(tenant)
    seen: Counter[str] = Counter()
    versions: dict[str, list[int]] = {}
    pages = 0
    async for page in tenant.client.iter_pages(integration_id, "production_kpis", limit=700):
        pages += 1
        for r in page.records:
            seen[r["kpi_id"]] += 1
            versions.setdefault(r["kpi_id"], []).append(r["version"])
        if pages in (3, 9):
            mcp_sim.tick(tenant.code, ["production_kpis"], ratio=0.05)
    everything = {r["kpi_id"] async for r in tenant.client.iter_records(integration_id, "production_kpis")}
    assert set(seen) == everything  # nothing skipped
    twice = [i for i, n in seen.items() if n > 1]
    assert twice  # records already read and then changed come again, as their new version
    assert all(versions[i] == sorted(versions[i]) and len(set(versions[i])) == len(versions[i]) for i in twice)


async def test_resume_from_a_saved_cursor(tenant) -> None:
    integration_id = await register(tenant, "netsuite")
    page1 = await tenant.client.fetch_page(integration_id, "financials", limit=100)
    rest = [
        p async for p in tenant.client.iter_pages(integration_id, "financials", limit=100, cursor=page1.next_cursor)
    ]
    ids = [r["financial_id"] for r in page1.records] + [r["financial_id"] for p in rest for r in p.records]
    assert len(ids) == len(set(ids)) == 8 * 48


async def test_current_records_by_location(tenant) -> None:
    rows = await tenant.client.current("employees", location="eastlake_001", limit=1000)
    assert rows and {r["practice_location"] for r in rows} == {"eastlake_001"}
    assert isinstance(rows[0]["annual_salary"], Decimal)
