from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from apev_contracts import ids, naming
from apev_contracts.errors import ContractError


@pytest.mark.parametrize(
    "tenant", ["acme", "a", "acme-dental-2", "0abc", "x" * 63, "9b2f6c1e-8d4a-4f0e-9a41-3c2b1d0e5f67"]
)
def test_valid_tenant_ids_are_returned_unchanged(tenant: str) -> None:
    assert naming.validate_tenant_id(tenant) == tenant


def test_an_upper_case_uuid_is_normalised_to_lower_case() -> None:
    assert naming.validate_tenant_id("9B2F6C1E-8D4A-4F0E-9A41-3C2B1D0E5F67") == "9b2f6c1e-8d4a-4f0e-9a41-3c2b1d0e5f67"


@pytest.mark.parametrize(
    "tenant", ["", "Acme", "-acme", "acme_dental", "acme dental", "x" * 64, "acme/../b", "ACME", "tenant\n", "é"]
)
def test_malformed_tenant_ids_are_rejected_naming_the_field(tenant: str) -> None:
    with pytest.raises(ContractError) as info:
        naming.validate_tenant_id(tenant)
    assert info.value.field == "tenant_id"
    assert str(info.value).startswith("tenant_id: ")
    assert "is not a tenant id" in info.value.reason


def test_catalog_secret_scope_and_principals_follow_section_8() -> None:
    t = "acme-dental"
    assert naming.catalog_name(t) == "agentprovision_acme_dental"
    assert naming.secret_scope(t) == "agentprovision_acme_dental"
    assert naming.knowledge_chunks_table(t) == "agentprovision_acme_dental.gold.knowledge_chunks"
    assert naming.knowledge_index(t) == "agentprovision_acme_dental.gold.knowledge_chunks_index"
    assert naming.admins_group(t) == "tenant_acme_dental_admins"
    assert naming.engineers_group(t) == "tenant_acme_dental_engineers"
    assert naming.analysts_group(t) == "tenant_acme_dental_analysts"
    assert naming.pipeline_principal(t) == "tenant_acme_dental_pipeline"
    assert naming.reader_principal(t) == "tenant_acme_dental_reader"
    assert naming.agent_principal("retention-agent") == "agent_retention_agent"


def test_uuid_tenant_catalog_name() -> None:
    tenant = "9b2f6c1e-8d4a-4f0e-9a41-3c2b1d0e5f67"
    assert naming.catalog_name(tenant) == "agentprovision_9b2f6c1e_8d4a_4f0e_9a41_3c2b1d0e5f67"


def test_names_refuse_a_malformed_tenant() -> None:
    with pytest.raises(ContractError, match="tenant_id"):
        naming.catalog_name("Acme_Dental")


def test_jwt_roles_map_to_groups_and_agent_principal() -> None:
    assert naming.role_groups("acme") == {
        "admin": "tenant_acme_admins",
        "engineer": "tenant_acme_engineers",
        "analyst": "tenant_acme_analysts",
    }
    assert naming.principal_for_role("acme", "agent", agent_id="a1") == "agent_a1"
    with pytest.raises(ContractError) as info:
        naming.principal_for_role("acme", "agent")
    assert info.value.field == "agent_id"
    with pytest.raises(ContractError) as info:
        naming.principal_for_role("acme", "owner")
    assert info.value.field == "role"


def test_job_names_are_stable_and_parse_back() -> None:
    name = naming.job_name("acme", "ingest", "ds-adp-1")
    assert name == "ap:acme:ingest:ds-adp-1"
    assert naming.parse_job_name(name) == ("acme", "ingest", "ds-adp-1")
    for kind in ("ingest", "agent-deploy", "agent-insights", "adhoc"):
        assert naming.job_name("acme", kind, "k") == f"ap:acme:{kind}:k"


@pytest.mark.parametrize(
    ("tenant", "kind", "key", "field"),
    [
        ("acme", "ingestion", "k", "kind"),
        ("acme", "ingest", "a:b", "key"),
        ("acme", "ingest", "", "key"),
        ("ACME", "ingest", "k", "tenant_id"),
    ],
)
def test_job_name_rejects_bad_parts(tenant: str, kind: str, key: str, field: str) -> None:
    with pytest.raises(ContractError) as info:
        naming.job_name(tenant, kind, key)
    assert info.value.field == field


@pytest.mark.parametrize("name", ["acme:ingest:k", "ap:acme:ingest:k:extra", "xx:acme:ingest:k", "ap:Acme:ingest:k"])
def test_parse_job_name_rejects_foreign_names(name: str) -> None:
    with pytest.raises(ContractError):
        naming.parse_job_name(name)


def test_job_tags() -> None:
    assert naming.job_tags("acme", "agent-deploy", agent_id="a1", model_version="3") == {
        "ap_tenant_id": "acme",
        "ap_kind": "agent-deploy",
        "ap_agent_id": "a1",
        "ap_model_version": "3",
    }


def test_deterministic_id_is_a_uuid5_fixed_forever() -> None:
    value = ids.deterministic_id("run.finished", "5001", "0")
    assert uuid.UUID(value).version == 5
    # Pinned: if this changes, every consumer's inbox would take redeliveries for new events.
    assert value == str(uuid.uuid5(uuid.UUID("1d9ec73f-ae22-4b20-909b-765db7744d68"), '["run.finished", "5001", "0"]'))
    assert ids.run_finished_id("5001", 0) == value


def test_deterministic_id_parts_cannot_be_confused() -> None:
    assert ids.deterministic_id("a:b", "c") != ids.deterministic_id("a", "b:c")
    assert ids.deterministic_id("ab") != ids.deterministic_id("a", "b")


def test_deterministic_id_arguments() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        ids.deterministic_id()
    with pytest.raises(TypeError, match="part 1 must be a str"):
        ids.deterministic_id("a", 1)  # type: ignore[arg-type]


def test_named_id_helpers_distinguish_their_causes() -> None:
    assert ids.run_finished_id("5001", 0) != ids.run_finished_id("5001", 1)
    a = ids.cost_sample_id("acme", date(2026, 11, 24), "SKU_A", 0)
    assert a == ids.cost_sample_id("acme", "2026-11-24", "SKU_A", "0")
    assert a != ids.cost_sample_id("acme", date(2026, 11, 24), "SKU_A", 1)
    assert a != ids.cost_sample_id("other", date(2026, 11, 24), "SKU_A", 0)
    assert ids.insight_id("acme", "agent", "row-1") != ids.insight_id("acme", "agent", "row-2")
    assert ids.caused_event_id("job.requested", "evt-1") != ids.caused_event_id("job.requested", "evt-2")


def test_time_based_ids_do_not_depend_on_the_timezone_of_the_input() -> None:
    utc = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert ids.latency_sample_id("ep", "r0", utc) == ids.latency_sample_id("ep", "r0", paris)
    assert ids.scale_request_id("ep", "rule", utc) == ids.scale_request_id("ep", "rule", paris)
    with pytest.raises(ValueError, match="timezone-aware"):
        ids.latency_sample_id("ep", "r0", datetime(2026, 11, 24))
