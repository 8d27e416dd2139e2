"""The documents entity: deterministic per tenant, tenant-unique ids, revised by ticks and by write-back, each
change a new version and a data.changed event."""

from __future__ import annotations

import pytest

from apev_mcpsim.documents import DOC_TYPES, PER_TYPE, REVISION
from apev_mcpsim.exceptions import McpSimError
from apev_mcpsim.models import Backend, OutgoingEvent, SimConfig


def backend(**kwargs: object) -> Backend:
    return Backend(SimConfig(seed=42, admin_key="admin", locations=3, days=10, **kwargs))  # type: ignore[arg-type]


def test_documents_are_deterministic_per_tenant_with_their_own_ids() -> None:
    a, b = backend(), backend()
    acme = a.table("acme", "documents").rows
    assert acme == b.table("acme", "documents").rows
    other = a.table("default", "documents").rows
    assert len(acme) == len(other) == PER_TYPE * len(DOC_TYPES)
    assert not set(acme) & set(other)  # ids carry the tenant
    assert {r["DOC_TYPE"] for r in acme.values()} == set(DOC_TYPES)
    doc = next(iter(acme.values()))
    assert set(doc) == {"DOCUMENT_ID", "DOC_TYPE", "TITLE", "PRACTICE_LOCATION", "AUTHOR", "BODY", "UPDATED_AT",
                        "VERSION"}  # fmt: skip
    assert all(len(r["BODY"].split()) >= 30 and r["TITLE"] for r in acme.values())
    assert any("Delta Dental" in r["BODY"] for r in acme.values() if r["DOC_TYPE"] == "payer_contract")


def test_a_tick_revises_documents_and_fires_data_changed() -> None:
    sent: list[OutgoingEvent] = []
    b = Backend(SimConfig(seed=42, admin_key="a", locations=2, days=10), on_event=sent.append)
    b.subscribe("acme", "http://x/hook", "secret-123", ["data.changed"])
    before = {k: dict(v) for k, v in b.table("acme", "documents").rows.items()}
    b.tick("acme", ["documents"], 0.05)
    after = b.table("acme", "documents").rows
    changed = [k for k in after if after[k] != before[k]]
    assert len(changed) == round(len(before) * 0.05)
    for k in changed:
        assert after[k]["VERSION"] == "2" and REVISION in after[k]["BODY"]
        assert after[k]["BODY"].startswith(before[k]["BODY"])
    assert sent[-1].event["data"]["changed"] == {"documents": len(changed)}


def test_write_back_changes_a_documents_text_once_per_key() -> None:
    b = backend()
    doc_id = sorted(b.table("acme", "documents").rows)[0]
    body = {"entity_type": "documents", "entity_id": doc_id, "reason": "policy update",
            "changes": {"BODY": "Crowns need a pre-authorisation since March.", "TITLE": "Crown rule"}}  # fmt: skip
    status, result = b.update("acme", "netsuite", body, "doc-1")
    assert status == 200 and result["version"] == 2
    assert b.update("acme", "netsuite", body, "doc-1") == (status, result)
    row = b.table("acme", "documents").rows[doc_id]
    assert (row["TITLE"], row["BODY"], row["VERSION"]) == ("Crown rule", body["changes"]["BODY"], "2")  # type: ignore[index]
    for bad in ({"BODY": "   "}, {"DOC_TYPE": "memo"}, {"BODY": "x" * 20_001}):
        with pytest.raises(McpSimError) as refused:
            b.update("acme", "netsuite", {**body, "changes": bad}, f"bad-{len(str(bad))}")
        assert refused.value.status == 422
    with pytest.raises(McpSimError):  # documents belong to the netsuite integration only
        b.update("acme", "adp", body, "doc-2")
