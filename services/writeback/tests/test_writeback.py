"""Policy, exactly-once write-back, approvals from Slack and HTTP, refusals, MCP errors, tenant isolation, on
real Kafka + PostgreSQL + the MCP simulator + the Slack stand-in. Assertions are on resulting state: the
simulator's applied changes and records, the stand-in's messages and updates, the service's audit trail,
the `writeback.outcome` and dead-letter topics."""

from __future__ import annotations

import pytest

from .conftest import APPROVER, Stack, Tenant, until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def _button(message: object) -> dict[str, str]:
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]  # type: ignore[attr-defined]
    return {e["action_id"]: e["value"] for e in actions["elements"]}


async def test_seed_example_at_risk_employee_is_applied_to_the_adp_record(stack: Stack) -> None:
    t = stack.tenant()
    event = stack.insight(t, "E00007")
    await stack.send(event)
    await until(lambda: stack.outcomes_of(event.data.insight_id) == ["applied"], what="applied outcome")
    record = stack.mcp.backend.table(t.code, "employees").rows["E00007"]
    assert (record["RISK_FLAG"], record["REVIEW_STATUS"], record["REVIEW_DATE"]) == ("HIGH", "pending", "2026-12-01")
    assert record["VERSION"] == "2"
    (change,) = stack.changes(t)
    assert change["idempotency_key"] == event.data.insight_id and change["integration_type"] == "adp"
    trail = await stack.audit(t, event.data.insight_id)
    assert trail["insight"]["state"] == "applied" and trail["insight"]["version"] == 2
    (attempt,) = trail["attempts"]
    assert attempt["status"] == 200 and attempt["idempotency_key"] == event.data.insight_id
    assert attempt["latency_ms"] is not None and attempt["request"]["changes"]["RISK_FLAG"] == "HIGH"
    assert [d["decision"] for d in trail["decisions"]] == ["auto"]
    assert stack.messages(t) == []  # nothing to approve

    await stack.send(event)  # redelivered: the inbox knows it, and MCP would answer the same key the same
    low = stack.insight(t, "E00008", confidence=0.3)
    await stack.send(low)
    await until(lambda: stack.outcomes_of(low.data.insight_id) == ["held"], what="low confidence held")
    assert len(stack.changes(t)) == 1


async def test_payroll_insight_is_held_posted_and_an_approvers_click_writes_it_once(stack: Stack) -> None:
    t = stack.tenant()
    event = stack.insight(t, "E00010", changes={"ANNUAL_SALARY": "81000.00"}, reason="Paid below band")
    insight_id = event.data.insight_id
    await stack.send(event)
    await until(lambda: len(stack.messages(t)) == 1, what="the approval message")
    # The message is posted inside the handler; the `held` outcome goes out through the outbox after its commit.
    await until(lambda: stack.outcomes_of(insight_id) == ["held"], what="the held outcome")
    assert stack.changes(t) == []
    (message,) = stack.messages(t)
    text = str(message.blocks)
    old_salary = stack.mcp.backend.table(t.code, "employees").rows["E00010"]["ANNUAL_SALARY"]
    assert "ANNUAL_SALARY" in text and "81000.00" in text and old_salary in text  # old and new values
    assert "retention-agent" in text and "Paid below band" in text and "92%" in text
    assert set(_button(message)) == {"writeback_approve", "writeback_reject"}
    async with stack.http(t) as http:
        held = (await http.get("/api/v1/writeback/insights")).json()["insights"]
    assert [h["insight_id"] for h in held] == [insight_id]

    answer = await stack.sinks.aclick(message.id, "writeback_approve", APPROVER, user_name="dana")
    assert answer["status"] == 200 and answer["elapsed_ms"] < 3000
    await until(lambda: len(stack.changes(t)) == 1, what="the write-back")
    await until(lambda: len(stack.sinks.backend.slack.interactivity.updates(message.id)) == 1, what="update")
    (update,) = stack.sinks.backend.slack.interactivity.updates(message.id)
    assert f"<@{APPROVER}>" in update.body["text"] and "applied" in str(update.body["blocks"])
    assert stack.mcp.backend.table(t.code, "employees").rows["E00010"]["ANNUAL_SALARY"] == "81000.00"

    again = await stack.sinks.aclick(message.id, "writeback_approve", APPROVER)
    assert again["status"] == 200
    async with stack.http(t) as http:
        r = await http.post(f"/api/v1/writeback/insights/{insight_id}/approve")
    assert r.status_code == 200 and r.json()["changed"] is False and r.json()["state"] == "applied"
    assert stack.service is not None
    await stack.service.drain()
    assert len(stack.changes(t)) == 1
    await until(lambda: stack.outcomes_of(insight_id) == ["held", "applied"], what="outcomes")
    trail = await stack.audit(t, insight_id)
    assert [(d["via"], d["decision"], d["result"]) for d in trail["decisions"]] == [
        ("policy", "hold", "taken"),
        ("slack", "approve", "taken"),
        ("slack", "approve", "no_change"),
        ("http", "approve", "no_change"),
    ]
    assert len(trail["attempts"]) == 1 and trail["insight"]["decided_by"] == APPROVER


async def test_non_approver_forged_and_stale_clicks_are_refused_and_change_nothing(stack: Stack) -> None:
    t = stack.tenant()
    event = stack.insight(t, "E00011", changes={"ANNUAL_SALARY": "99000.00"})
    await stack.send(event)
    await until(lambda: len(stack.messages(t)) == 1, what="the approval message")
    (message,) = stack.messages(t)
    stranger = await stack.sinks.aclick(message.id, "writeback_approve", "U0STRANGER")
    assert stranger["status"] == 200 and "not an approver" in stranger["body"]
    forged = await stack.sinks.aclick(message.id, "writeback_approve", APPROVER, signature="forged")
    missing = await stack.sinks.aclick(message.id, "writeback_approve", APPROVER, signature="missing")
    stale = await stack.sinks.aclick(message.id, "writeback_approve", APPROVER, timestamp_offset=-301)
    assert (forged["status"], missing["status"], stale["status"]) == (401, 401, 401)
    assert stack.service is not None
    await stack.service.drain()
    assert stack.changes(t) == [] and await stack.state(t, event.data.insight_id) == "held"
    assert stack.sinks.backend.slack.interactivity.updates(message.id) == []
    trail = await stack.audit(t, event.data.insight_id)
    assert [(d["actor"], d["result"]) for d in trail["decisions"] if d["via"] == "slack"] == [("U0STRANGER", "refused")]
    assert trail["attempts"] == []


async def test_a_rejected_insight_is_never_written(stack: Stack) -> None:
    t = stack.tenant()
    event = stack.insight(t, "E00012", changes={"ANNUAL_SALARY": "1.00"})
    insight_id = event.data.insight_id
    await stack.send(event)
    await until(lambda: len(stack.messages(t)) == 1, what="the approval message")
    (message,) = stack.messages(t)
    assert (await stack.sinks.aclick(message.id, "writeback_reject", APPROVER))["status"] == 200
    await until(lambda: stack.outcomes_of(insight_id) == ["held", "rejected"], what="rejected outcome")
    await stack.sinks.aclick(message.id, "writeback_approve", APPROVER)
    async with stack.http(t) as http:
        r = await http.post(f"/api/v1/writeback/insights/{insight_id}/approve")
    assert r.status_code == 409 and r.json()["state"] == "rejected"
    assert stack.service is not None
    await stack.service.drain()
    assert stack.changes(t) == [] and stack.outcomes_of(insight_id) == ["held", "rejected"]
    trail = await stack.audit(t, insight_id)
    assert [(d["via"], d["decision"], d["result"]) for d in trail["decisions"]] == [
        ("policy", "hold", "taken"),
        ("slack", "reject", "taken"),
        ("slack", "approve", "no_change"),
        ("http", "approve", "no_change"),
    ]
    assert trail["attempts"] == []

    policy = stack.tenant(targets={"adp/employees": "reject"})  # rejected by the tenant's policy
    by_policy = stack.insight(policy)
    await stack.send(by_policy)
    await until(lambda: stack.outcomes_of(by_policy.data.insight_id) == ["rejected"], what="policy rejection")
    assert stack.changes(policy) == [] and stack.messages(policy) == []


async def test_404_is_dead_lettered_with_mcps_detail_and_409_is_a_conflict(stack: Stack) -> None:
    t = stack.tenant()
    missing = stack.insight(t, "E99999")
    stale = stack.insight(t, "E00013", expected_version="5")  # the record is at version 1
    await stack.send(missing, stale)
    await until(lambda: stack.outcomes_of(stale.data.insight_id) == ["conflict"], what="conflict")
    await until(lambda: any(r.key.decode() == t.tenant_id for r in stack.dead), what="the 404 in insight.created.dlq")
    (letter,) = [r for r in stack.dead if r.key.decode() == t.tenant_id]
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["x-apev-dlq-reason"] == "permanent"
    assert "employees 'E99999'" in headers["x-apev-dlq-error-message"]
    assert missing.id.encode() in letter.value
    failed = await stack.audit(t, missing.data.insight_id)
    assert failed["insight"]["state"] == "failed" and failed["attempts"][0]["status"] == 404
    conflict = await stack.audit(t, stale.data.insight_id)
    assert conflict["insight"]["state"] == "conflict" and "version 1, expected 5" in conflict["insight"]["detail"]
    assert [a["status"] for a in conflict["attempts"]] == [409]  # not retried blindly
    assert stack.outcomes_of(missing.data.insight_id) == ["failed"]
    assert stack.changes(t) == []


async def test_a_tenant_cannot_list_or_approve_another_tenants_held_insights(stack: Stack) -> None:
    a, b = stack.tenant(approvers=["U0ALICE"]), stack.tenant(approvers=["U0BOB"])
    held_b = stack.insight(b, changes={"ANNUAL_SALARY": "70000.00"})
    await stack.send(held_b)
    await until(lambda: len(stack.messages(b)) == 1, what="b's approval message")
    async with stack.http(a) as http:
        assert (await http.get("/api/v1/writeback/insights")).json()["insights"] == []
        approve = await http.post(f"/api/v1/writeback/insights/{held_b.data.insight_id}/approve")
        audit = await http.get(f"/api/v1/writeback/insights/{held_b.data.insight_id}/audit")
    assert approve.status_code == 404 and audit.status_code == 404
    async with stack.http(b, roles=["analyst"]) as http:  # b's analyst may read, not decide
        assert (await http.post(f"/api/v1/writeback/insights/{held_b.data.insight_id}/approve")).status_code == 403
        assert len((await http.get("/api/v1/writeback/insights")).json()["insights"]) == 1
    async with stack.http() as http:
        assert (await http.get("/api/v1/writeback/insights")).status_code == 401
    (message,) = stack.messages(b)
    refused = await stack.sinks.aclick(message.id, "writeback_approve", "U0ALICE")  # a's approver, b's message
    assert "not an approver" in refused["body"]
    assert stack.service is not None
    await stack.service.drain()
    assert await stack.state(b, held_b.data.insight_id) == "held" and stack.changes(b) == []


async def test_without_an_mcp_code_it_waits_and_is_applied_once_the_datasource_names_it(stack: Stack) -> None:
    t = stack.tenant(code=False)
    event = stack.insight(t, "E00014")
    await stack.send(event)
    await until(lambda: _waiting(stack, t, event.data.insight_id), what="waiting")
    assert stack.changes(t) == []
    await stack.send(stack.datasource(t))
    await until(lambda: stack.outcomes_of(event.data.insight_id) == ["applied"], timeout=30, what="applied")
    assert [c["entity_id"] for c in stack.changes(t)] == ["E00014"]


async def _waiting(stack: Stack, t: Tenant, insight_id: str) -> bool:
    async with stack.http(t) as http:
        r = await http.get(f"/api/v1/writeback/insights/{insight_id}")
    if r.status_code != 200:
        return False
    insight = r.json()["insight"]
    return bool(insight["state"] == "pending" and "no MCP tenant code" in (insight["wait_reason"] or ""))


async def test_an_erasure_request_cancels_the_persons_held_and_pending_write_backs_only(stack: Stack) -> None:
    from apev_contracts import ErasureRequested
    from apev_contracts.envelope import new_event

    t = stack.tenant(code=False)  # auto-applied ones wait for an MCP code: pending
    pending = stack.insight(t, "E00031")
    held = stack.insight(t, "E00031", confidence=0.3)
    other = stack.insight(t, "E00032", confidence=0.3)
    await stack.send(pending, held, other)
    await until(lambda: _waiting(stack, t, pending.data.insight_id), what="pending")
    for e in (held, other):
        await until(lambda e=e: stack.outcomes_of(e.data.insight_id) == ["held"], what="held")
    erasure = new_event(ErasureRequested(tenant_id=t.tenant_id, employee_id="E00031"), tenant_id=t.tenant_id,
                        source="tests/writeback")  # fmt: skip
    await stack.send(erasure)
    await until(lambda: stack.outcomes_of(pending.data.insight_id) == ["rejected"], what="pending cancelled")
    await until(lambda: stack.outcomes_of(held.data.insight_id) == ["held", "rejected"], what="held cancelled")
    assert await stack.state(t, other.data.insight_id) == "held"
    await stack.send(stack.datasource(t), erasure)  # an MCP code now, and the request replayed
    async with stack.http(t) as http:
        late = await http.post(f"/api/v1/writeback/insights/{held.data.insight_id}/approve")
    assert late.status_code in (200, 409) and await stack.state(t, held.data.insight_id) == "rejected"
    other_approved = stack.insight(t, "E00033")  # after the code: applied, so the code is known
    await stack.send(other_approved)
    await until(lambda: stack.outcomes_of(other_approved.data.insight_id) == ["applied"], what="applied")
    await stack.service.resume()  # what would send a pending write-back now that the code is known
    assert [c["entity_id"] for c in stack.changes(t)] == ["E00033"]
    assert stack.outcomes_of(pending.data.insight_id) == ["rejected"]
