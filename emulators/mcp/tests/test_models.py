"""The backend without HTTP: determinism, cursor paging, idempotent write-back, registration."""

from datetime import UTC, datetime

import pytest

from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.models import Backend, OutgoingEvent, SimConfig


def backend(seed: int = 42, **kwargs) -> Backend:
    return Backend(SimConfig(seed=seed, admin_key="admin", locations=3, days=100, **kwargs))


def all_pages(b: Backend, integration_id: str, entity: str, limit: int, **kwargs) -> list[dict]:
    rows, cursor = [], None
    while True:
        page = b.page("acme", integration_id, entity, limit=limit, cursor=cursor, updated_since=None, **kwargs)
        rows += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def test_data_is_deterministic_per_seed_and_tenant() -> None:
    a, b, c = backend(), backend(), backend(seed=43)
    for entity in ("employees", "production_kpis", "journal_entries"):
        assert a.table("acme", entity).rows == b.table("acme", entity).rows
        assert a.table("acme", entity).rows != c.table("acme", entity).rows
        assert a.table("acme", entity).rows != a.table("default", entity).rows


def test_ticks_are_deterministic() -> None:
    a, b = backend(), backend()
    assert a.tick("acme", ["employees"], 0.1) == b.tick("acme", ["employees"], 0.1)
    assert a.table("acme", "employees").rows == b.table("acme", "employees").rows
    changed = [r for r in a.table("acme", "employees").rows.values() if r["VERSION"] == "2"]
    assert len(changed) == round(len(a.table("acme", "employees").rows) * 0.1)
    assert {r["UPDATED_AT"] for r in changed} == {"2026-01-01T01:00:00Z"}


def test_values_are_strings_and_keys_upper_case() -> None:
    row = next(iter(backend().table("acme", "financials").rows.values()))
    assert all(k.isupper() and (isinstance(v, str) or k in NULLABLE) for k, v in row.items())
    assert {k for k, v in row.items() if v is None} <= NULLABLE


NULLABLE = {"REVIEW_NOTE", "REVIEW_DATE"}  # unset until someone (an agent's write-back) reviews the record


def test_writeback_fields_of_the_demo_insights_exist_and_are_validated() -> None:
    b = backend()
    body = {
        "entity_type": "employees",
        "entity_id": "E00001",
        "changes": {"RISK_FLAG": "HIGH", "REVIEW_STATUS": "pending", "REVIEW_NOTE": "Overtime up 40%",
                    "REVIEW_DATE": "2026-12-01"},
        "reason": "at risk",
    }  # fmt: skip
    status, result = b.update("acme", "adp", body, "k-1")
    assert status == 200 and result["version"] == 2
    row = b.table("acme", "employees").rows["E00001"]
    assert (row["RISK_FLAG"], row["REVIEW_STATUS"], row["REVIEW_DATE"]) == ("HIGH", "pending", "2026-12-01")
    for bad in ({"RISK_FLAG": "SEVERE"}, {"REVIEW_STATUS": "maybe"}, {"REVIEW_DATE": "soon"}):
        with pytest.raises(McpSimError) as err:
            b.update("acme", "adp", {**body, "changes": bad}, f"k-{bad}")
        assert err.value.status == 422
    for entity, entity_id in (("financials", "FIN-001-2025-12"), ("journal_entries", "JE0000001")):
        review = {"REVIEW_STATUS": "in_review", "REVIEW_NOTE": "Expenses 30% over trailing mean"}
        change = {"entity_type": entity, "entity_id": entity_id, "reason": "variance", "changes": review}
        assert b.update("acme", "netsuite", change, f"n-{entity}")[0] == 200


def test_cursor_pages_are_disjoint_and_complete() -> None:
    b = backend()
    integration, _ = b.register("acme", "dentalintel", "ds", {})
    rows = all_pages(b, integration.integration_id, "production_kpis", 37)
    ids = [r["KPI_ID"] for r in rows]
    assert len(ids) == len(set(ids)) == 3 * 100


def test_updated_since_is_exclusive() -> None:
    b = backend()
    integration, _ = b.register("acme", "adp", "ds", {})
    b.tick("acme", ["employees"], 0.05)
    since = datetime(2026, 1, 1, 0, 59, 59, tzinfo=UTC)
    page = b.page("acme", integration.integration_id, "employees", updated_since=since, limit=1000, cursor=None)
    assert page["data"] and all(r["VERSION"] == "2" for r in page["data"])
    at = datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert (
        b.page("acme", integration.integration_id, "employees", updated_since=at, limit=10, cursor=None)["data"] == []
    )


def test_a_cursor_of_another_entity_is_refused() -> None:
    b = backend()
    integration, _ = b.register("acme", "adp", "ds", {})
    cursor = b.page("acme", integration.integration_id, "employees", updated_since=None, limit=1, cursor=None)
    with pytest.raises(McpSimError) as err:
        b.page(
            "acme",
            integration.integration_id,
            "payroll_runs",
            updated_since=None,
            limit=1,
            cursor=cursor["next_cursor"],
        )
    assert err.value.status == 400


def test_registration_is_idempotent_on_datasource_and_scoped_to_the_tenant() -> None:
    b = backend()
    first, created = b.register("acme", "adp", "ds-1", {})
    again, created_again = b.register("acme", "adp", "ds-1", {"x": 1})
    assert (created, created_again) == (True, False)
    assert again is first
    with pytest.raises(McpSimError) as conflict:
        b.register("acme", "netsuite", "ds-1", {})
    assert conflict.value.status == 409
    other, _ = b.register("default", "adp", "ds-1", {})
    assert other.integration_id != first.integration_id
    with pytest.raises(McpSimError) as err:
        b.integration("default", first.integration_id)
    assert err.value.status == 404


def test_write_back_applies_once_per_key_and_replays_errors() -> None:
    b = backend()
    body = {"entity_type": "employees", "entity_id": "E00001", "changes": {"job_title": "Lead"}, "reason": "r"}
    assert b.update("acme", "adp", body, "k1") == b.update("acme", "adp", body, "k1")
    assert len(b.changes) == 1
    assert b.table("acme", "employees").rows["E00001"]["JOB_TITLE"] == "Lead"
    stale = {**body, "expected_version": 1}
    assert b.update("acme", "adp", stale, "k2")[0] == 409
    b.update("acme", "adp", {**body, "expected_version": 2}, "k3")
    assert b.update("acme", "adp", stale, "k2")[0] == 409  # the stored answer, not a re-evaluation
    with pytest.raises(McpSimError) as bad:
        b.update("acme", "adp", {**body, "changes": {"ANNUAL_SALARY": "lots"}}, "k4")
    assert bad.value.status == 422
    assert b.update("acme", "adp", {**body, "changes": {"ANNUAL_SALARY": "1000"}}, "k4")[0] == 200


def test_keys_are_scoped_to_their_tenant() -> None:
    b = backend()
    key = b.mint_key("acme")["api_key"]
    assert key.startswith("acme_sk_")
    assert b.key_valid_for(key, "acme") and not b.key_valid_for(key, "default")
    assert b.key_valid_for("admin", "default")


def test_events_go_to_the_tenants_subscribers_only() -> None:
    sent: list[OutgoingEvent] = []
    b = Backend(SimConfig(admin_key="a", locations=2, days=10), on_event=sent.append)
    b.subscribe("acme", "http://x/hook", "secret-123", ["data.changed"])
    b.subscribe("default", "http://y/hook", "secret-123", None)
    b.tick("acme", ["locations"], 1.0)
    b.run_sync("acme", {"integration_type": "adp"})
    assert [(o.webhook.url, o.event["type"]) for o in sent] == [("http://x/hook", "data.changed")]
    assert sent[0].event["data"]["changed"] == {"locations": 2}


def test_keys_are_listed_oldest_first_without_the_secret_and_a_revoked_key_is_refused() -> None:
    b = backend()
    old, new = b.mint_key("acme"), b.mint_key("acme")
    b.mint_key("default")
    listed = b.list_keys("acme")
    assert [k["key_id"] for k in listed] == [old["key_id"], new["key_id"]]
    assert all("api_key" not in k for k in listed)
    b.revoke_key("acme", old["key_id"])
    assert not b.key_valid_for(old["api_key"], "acme") and b.key_valid_for(new["api_key"], "acme")
    assert [k["key_id"] for k in b.list_keys("acme")] == [new["key_id"]]
    with pytest.raises(McpSimError) as err:
        b.revoke_key("default", new["key_id"])  # another tenant's key id
    assert err.value.status == 404


def test_a_deregistered_integration_has_no_status_and_no_data() -> None:
    b = backend()
    integration, _ = b.register("acme", "adp", "ds-1", {})
    b.deregister("acme", integration.integration_id)
    assert b.statuses("acme", None) == []
    with pytest.raises(McpSimError) as err:
        b.page("acme", integration.integration_id, "employees", limit=10, cursor=None, updated_since=None)
    assert err.value.status == 404
    with pytest.raises(McpSimError):
        b.deregister("acme", integration.integration_id)
