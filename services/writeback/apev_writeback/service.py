"""What the writeback service decides: the tenant's policy for each insight, its write-back through MCP once,
and the decisions of the people who approve or reject held ones (HTTP and Slack take the same path).

    on_datasource_created(event, tx)   learn the tenant's MCP code
    on_insight_created(event, tx)      record + policy (auto / hold / reject); auto: write back; hold: post to Slack
    decide(tenant, insight, ...)       a person's approve / reject (HTTP or Slack): once, whoever clicks first
    slack_action(payload)              a verified Slack click: the approver check, then `decide` in the background
    resume()                           pending write-backs (approved, waiting for a code, cut short) and unposted holds

Exactly once: the MCP `Idempotency-Key` is the insight id and the request is built from the stored row, so
any repeat (redelivery, a crash between the call and the commit, a lost response, a second approval) gets
MCP's remembered answer instead of a second change. Each attempt is recorded (and committed) before its
call, and its status, response and latency after; outcomes are final only from `pending` (a conditional
update), so one `writeback.outcome` per insight and outcome, through the outbox with a deterministic id.
No FastStream here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from apev_contracts import DatasourceCreated, ErasureRequested, InsightCreated
from apev_contracts.envelope import CloudEvent, new_event
from apev_contracts.events.writeback import WritebackOutcomeRecorded
from apev_contracts.ids import writeback_outcome_id
from apev_runtime import outbox
from apev_runtime.db.engine import Database
from apev_runtime.errors import PermanentError
from apev_runtime.mcp import McpConflictError, McpError, McpUnavailableError, WriteBack
from apev_runtime.tracing import current_traceparent
from apev_writeback import slack, tables
from apev_writeback.gateway import Gateway
from apev_writeback.metrics import Metrics
from apev_writeback.settings import Settings
from apev_writeback.tenants import Tenants, decide

log = structlog.get_logger("apev.writeback")

SOURCE = "/apev/writeback"
INS = tables.insights


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DecisionResult:
    status: str  # taken, no_change, conflict, not_found
    state: str | None = None
    outcome: str | None = None
    detail: str | None = None
    row: Row[Any] | None = None


class WritebackService:
    def __init__(self, db: Database, gateway: Gateway, tenants: Tenants, settings: Settings, metrics: Metrics) -> None:
        self.db = db
        self.gw = gateway
        self.tenants = tenants
        self.settings = settings
        self.metrics = metrics
        self._background: set[asyncio.Task[Any]] = set()

    # ================================================================ datasource.created
    async def on_datasource_created(self, event: CloudEvent[DatasourceCreated], tx: AsyncConnection) -> None:
        ds = event.data
        values = {"mcp_tenant_code": ds.mcp_tenant_code, "datasource_id": ds.datasource_id, "updated_at": _now()}
        dialect = postgresql if self.db.dialect == "postgresql" else sqlite
        stmt = dialect.insert(tables.tenant_codes).values(tenant_id=ds.tenant_id, **values)
        await tx.execute(stmt.on_conflict_do_update(index_elements=["tenant_id"], set_=values))
        log.info(
            "mcp_tenant_code_learned", event_id=event.id, tenant_id=ds.tenant_id, mcp_tenant_code=ds.mcp_tenant_code
        )

    # ================================================================ erasure.requested
    async def on_erasure_requested(self, event: CloudEvent[ErasureRequested], tx: AsyncConnection) -> int:
        """Write-backs about the person that are held or pending are rejected (conditional on their state, so one
        being applied right now is not touched twice), with one `rejected` outcome each; the number cancelled."""
        data = event.data
        about = and_(
            INS.c.tenant_id == data.tenant_id,
            INS.c.entity_type == "employees",
            INS.c.entity_id == data.employee_id,
            INS.c.state.in_(("held", "pending")),
        )
        rows = list(await tx.execute(select(INS).where(about).with_for_update()))
        why = f"cancelled by erasure request {event.id}"
        for row in rows:
            done = await tx.execute(
                self._where(update(INS), row)
                .where(INS.c.state.in_(("held", "pending")))
                .values(state="rejected", decided_via="policy", decided_by=None, decided_at=_now(), detail=why,
                        wait_reason=None, updated_at=_now())
            )  # fmt: skip
            if done.rowcount != 1:
                continue
            await self._audit(tx, row.tenant_id, row.insight_id, "reject", "policy", None, "taken", why)
            fresh = await self._row(tx, row.tenant_id, row.insight_id)
            assert fresh is not None
            await self._publish(tx, fresh, "rejected", detail=why)
        log.info("writebacks_cancelled_for_erasure", request_id=event.id, tenant_id=data.tenant_id, count=len(rows))
        return len(rows)

    async def mcp_code(self, conn: AsyncConnection, tenant_id: str) -> str | None:
        """From the tenant settings, else from the tenant's `datasource.created`; never a guess."""
        configured = self.tenants.get(tenant_id).mcp_tenant_code
        if configured:
            return configured
        query = select(tables.tenant_codes.c.mcp_tenant_code).where(tables.tenant_codes.c.tenant_id == tenant_id)
        return (await conn.execute(query)).scalar_one_or_none()

    # ================================================================ insight.created
    async def on_insight_created(self, event: CloudEvent[InsightCreated], tx: AsyncConnection) -> None:
        ins = event.data
        if ins.tenant_id != event.tenantid:
            raise PermanentError(f"insight tenant_id {ins.tenant_id!r} differs from the event's {event.tenantid!r}")
        row = await self._row(tx, ins.tenant_id, ins.insight_id)
        if row is None:
            # The policy's decision is durable before any outside call: held/rejected rows commit here, pending
            # ones with the attempt record in `_apply` (one commit fewer per auto-applied insight).
            row = await self._record(tx, event)
            if row.state != "pending":
                await tx.commit()
        if row.state == "held" and row.slack_posted_at is None:
            await self._post_for_approval(tx, row)
        elif row.state == "pending":
            outcome, detail = await self._apply(tx, row, via="consumer")
            if outcome == "failed":
                raise PermanentError(f"MCP refused the write-back of insight {ins.insight_id!r}: {detail}")

    async def _record(self, tx: AsyncConnection, event: CloudEvent[InsightCreated]) -> Row[Any]:
        ins = event.data
        policy = self.tenants.get(ins.tenant_id).writeback_policy
        decision = decide(policy, ins.target_system, ins.entity_type, list(ins.changes), ins.confidence)
        state = {"auto": "pending", "hold": "held", "reject": "rejected"}[decision.action]
        now = _now()
        await tx.execute(
            insert(INS).values(
                tenant_id=ins.tenant_id, insight_id=ins.insight_id, event_id=event.id,
                correlation_id=event.correlationid, agent_id=ins.agent_id, target_system=ins.target_system,
                entity_type=ins.entity_type, entity_id=ins.entity_id, changes=dict(ins.changes), reason=ins.reason,
                confidence=ins.confidence, expected_version=ins.expected_version, policy=decision.action,
                policy_reason=decision.reason, state=state, decided_via="policy",
                decided_at=now if decision.action != "hold" else None, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        await self._audit(tx, ins.tenant_id, ins.insight_id, decision.action, "policy", None, "taken", decision.reason)
        log.info(
            "insight_recorded",
            event_id=event.id,
            tenant_id=ins.tenant_id,
            insight_id=ins.insight_id,
            policy=decision.action,
        )
        row = await self._row(tx, ins.tenant_id, ins.insight_id)
        assert row is not None
        if state in ("held", "rejected"):
            await self._publish(tx, row, state, detail=decision.reason)
        return row

    # ================================================================ the write-back
    async def _apply(self, conn: AsyncConnection, row: Row[Any], *, via: str) -> tuple[str, str | None]:
        """Send the stored change to MCP once (by its Idempotency-Key) and record what came back.

        Returns (outcome, detail); outcome `waiting` when no MCP code is known yet. An outage (429/503 after
        retries, connection lost, breaker open) is recorded and re-raised: the row stays `pending`."""
        code = await self.mcp_code(conn, row.tenant_id) if self.gw.mcp_configured else None
        if code is None:
            why = (
                "no MCP server configured (MCP_BASE_URL, MCP_API_KEY)"
                if not self.gw.mcp_configured
                else f"no MCP tenant code known for tenant {row.tenant_id!r} (tenant settings or datasource.created)"
            )
            await conn.execute(self._where(update(INS), row).values(wait_reason=why, updated_at=_now()))
            await conn.commit()
            log.warning("writeback_waiting", tenant_id=row.tenant_id, insight_id=row.insight_id, reason=why)
            return "waiting", why
        try:
            expected = int(row.expected_version) if row.expected_version is not None else None
        except ValueError:
            return await self._finish(conn, row, None, "failed", f"expected_version {row.expected_version!r} is "
                                      "not a record version (an integer)")  # fmt: skip
        change = WriteBack(
            entity_type=row.entity_type, entity_id=row.entity_id, changes=row.changes, reason=row.reason[:4000],
            expected_version=expected,
        )  # fmt: skip
        attempt = row.attempts + 1
        started = _now()
        attempt_id = (
            await conn.execute(
                insert(tables.attempts)
                .values(
                    tenant_id=row.tenant_id, insight_id=row.insight_id, attempt=attempt, via=via,
                    idempotency_key=row.insight_id, request=change.model_dump(mode="json", exclude_none=True),
                    started_at=started,
                )
                .returning(tables.attempts.c.id)
            )
        ).scalar_one()  # fmt: skip
        await conn.execute(
            self._where(update(INS), row).values(attempts=INS.c.attempts + 1, wait_reason=None, updated_at=started)
        )
        await conn.commit()  # the attempt (and its key) is on record before the call; no lock is held during it
        t0 = time.monotonic()
        status: int | None
        detail: str | None
        try:
            result = await self.gw.update(row.tenant_id, code, row.target_system, change, row.insight_id)
        except McpConflictError as exc:
            status, outcome, detail, response = 409, "conflict", _detail(exc), {"detail": exc.detail}
        except McpUnavailableError as exc:
            await self._attempt_done(conn, attempt_id, exc.status, {"detail": exc.detail}, repr(exc), t0)
            self.metrics.mcp_calls.labels(row.target_system, str(exc.status or "no_answer")).inc()
            await conn.commit()
            raise
        except McpError as exc:
            status, outcome, detail, response = exc.status, "failed", _detail(exc), {"detail": exc.detail}
        else:
            status, outcome, detail, response = 200, "applied", None, result.model_dump(mode="json")
        self.metrics.mcp_calls.labels(row.target_system, str(status)).inc()
        await self._attempt_done(conn, attempt_id, status, response, detail, t0)
        return await self._finish(conn, row, result if outcome == "applied" else None, outcome, detail)

    async def _attempt_done(
        self, conn: AsyncConnection, attempt_id: int, status: int | None, response: Any, error: str | None, t0: float
    ) -> None:
        latency = time.monotonic() - t0
        self.metrics.mcp_latency.observe(latency)
        await conn.execute(
            update(tables.attempts)
            .where(tables.attempts.c.id == attempt_id)
            .values(status=status, response=response, error=error, latency_ms=latency * 1000, finished_at=_now())
        )

    async def _finish(
        self, conn: AsyncConnection, row: Row[Any], result: Any, outcome: str, detail: str | None
    ) -> tuple[str, str | None]:
        values: dict[str, Any] = {"state": outcome, "detail": detail, "updated_at": _now()}
        if result is not None:
            values |= {"change_id": result.change_id, "version": result.version}
        done = await conn.execute(self._where(update(INS), row).where(INS.c.state == "pending").values(**values))
        if done.rowcount == 1:  # only the first to finish publishes (a concurrent resume gets MCP's same answer)
            fresh = await self._row(conn, row.tenant_id, row.insight_id)
            assert fresh is not None
            await self._publish(conn, fresh, outcome, detail=detail)
        await conn.commit()
        log.info("writeback_finished", tenant_id=row.tenant_id, insight_id=row.insight_id, outcome=outcome)
        return outcome, detail

    # ================================================================ approvals
    async def _post_for_approval(self, conn: AsyncConnection, row: Row[Any]) -> None:
        """Post the held insight to the tenant's approvals channel (once it is posted, never again)."""
        url = self.tenants.get(row.tenant_id).approvals_webhook
        if not url:
            return  # decided over HTTP only
        if row.old_values is None and self.gw.mcp_configured:
            code = await self.mcp_code(conn, row.tenant_id)
            await conn.rollback()
            if code is not None:
                old = await self.gw.current_values(code, row.entity_type, row.entity_id, list(row.changes))
                await conn.execute(self._where(update(INS), row).values(old_values=old))
                await conn.commit()
                row = await self._row(conn, row.tenant_id, row.insight_id) or row
        try:
            await self.gw.post_slack(url, slack.approval_message(row))
            values: dict[str, Any] = {"slack_posted_at": _now(), "slack_error": None}
        except Exception as exc:  # the hold stands; the resume loop posts it again
            log.warning("slack_post_failed", tenant_id=row.tenant_id, insight_id=row.insight_id, error=repr(exc)[:300])
            values = {"slack_error": repr(exc)[:1000], "updated_at": _now()}
        await conn.execute(self._where(update(INS), row).values(**values))
        await conn.commit()

    async def decide(self, tenant_id: str, insight_id: str, decision: str, actor: str, via: str) -> DecisionResult:
        """A person's approve or reject, from HTTP or Slack. Only the first decision on a held insight is taken;
        any later one (a second click, an HTTP approval after a Slack one) changes nothing."""
        async with self.db.engine.connect() as conn:
            row = await self._row(conn, tenant_id, insight_id)
            if row is None:
                return DecisionResult("not_found", detail=f"no insight {insight_id!r} for tenant {tenant_id!r}")
            target = "pending" if decision == "approve" else "rejected"
            taken = (
                await conn.execute(
                    self._where(update(INS), row)
                    .where(INS.c.state == "held")
                    .values(state=target, decided_via=via, decided_by=actor, decided_at=_now(), updated_at=_now())
                )
            ).rowcount == 1
            if not taken:
                fresh = await self._row(conn, tenant_id, insight_id)
                assert fresh is not None
                same = (decision == "reject") == (fresh.state == "rejected")
                status = "no_change" if same else "conflict"
                why = f"already {fresh.state} (decided via {fresh.decided_via} by {fresh.decided_by or 'policy'})"
                await self._audit(conn, tenant_id, insight_id, decision, via, actor, "no_change", why)
                await conn.commit()
                self.metrics.decisions.labels(via, decision, "no_change").inc()
                return DecisionResult(status, state=fresh.state, outcome=fresh.state, detail=why, row=fresh)
            await self._audit(conn, tenant_id, insight_id, decision, via, actor, "taken", None)
            self.metrics.decisions.labels(via, decision, "taken").inc()
            fresh = await self._row(conn, tenant_id, insight_id)
            assert fresh is not None
            if decision == "reject":
                await self._publish(conn, fresh, "rejected", detail=f"rejected by {actor} via {via}")
                await conn.commit()
                return DecisionResult("taken", state="rejected", outcome="rejected", row=fresh)
            await conn.commit()
            try:
                outcome, detail = await self._apply(conn, fresh, via="approval")
            except McpUnavailableError as exc:  # stays pending: the resume loop sends it when MCP is back
                outcome, detail = "pending", f"MCP unavailable, will retry: {exc}"
            final = await self._row(conn, tenant_id, insight_id)
            return DecisionResult("taken", state=final.state if final else None, outcome=outcome, detail=detail,
                                  row=final)  # fmt: skip

    async def slack_action(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A verified `block_actions` click. Answers at once (Slack waits 3 s); the decision and the message's
        update run in the background."""
        action = payload["actions"][0]
        decision = {slack.APPROVE: "approve", slack.REJECT: "reject"}.get(action.get("action_id"))
        if decision is None:
            raise slack.InteractionRefused("payload", f"unknown action {action.get('action_id')!r}")
        tenant_id, insight_id = slack.read_value(action.get("value"))
        user = str((payload.get("user") or {}).get("id") or "")
        async with self.db.engine.connect() as conn:
            row = await self._row(conn, tenant_id, insight_id)
            if row is None:
                raise slack.InteractionRefused("payload", f"no insight {insight_id!r} for tenant {tenant_id!r}")
            if user not in self.tenants.get(tenant_id).approvers:
                detail = f"Slack user {user!r} is not an approver of tenant {tenant_id!r}"
                await self._audit(conn, tenant_id, insight_id, decision, "slack", user, "refused", detail)
                await conn.commit()
                self.metrics.decisions.labels("slack", decision, "refused").inc()
                self.metrics.slack_refused.labels("approver").inc()
                raise slack.InteractionRefused("approver", detail)
        response_url = payload.get("response_url")

        async def run() -> None:
            result = await self.decide(tenant_id, insight_id, decision, user, "slack")
            if result.status == "taken" and isinstance(response_url, str) and result.row is not None:
                msg = slack.decided_message(result.row, user, decision, result.outcome or "unknown")
                await self.gw.respond_slack(response_url, msg)

        self._spawn(run())
        return {"response_type": "ephemeral", "replace_original": False, "text": f"{decision.title()} received."}

    # ================================================================ resume
    async def resume(self) -> int:
        """One pass: pending write-backs waiting for a code or untouched for `resume_after_seconds` (approved
        during an outage, cut short by a crash), and held insights whose Slack message is not posted."""
        cutoff = _now() - timedelta(seconds=self.settings.resume_after_seconds)
        async with self.db.engine.connect() as conn:
            pending = (
                await conn.execute(
                    select(INS)
                    .where(INS.c.state == "pending", or_(INS.c.wait_reason.is_not(None), INS.c.updated_at < cutoff))
                    .order_by(INS.c.updated_at)
                    .limit(200)
                )
            ).all()
            unposted = (
                await conn.execute(
                    select(INS)
                    .where(and_(INS.c.state == "held", INS.c.slack_posted_at.is_(None), INS.c.updated_at < cutoff))
                    .limit(50)
                )
            ).all()
            await conn.rollback()
            done = 0
            for row in pending:
                try:
                    outcome, _ = await self._apply(conn, row, via="resume")
                    if outcome != "waiting":
                        done += 1
                        self.metrics.resumed.inc()
                except Exception as exc:
                    await conn.rollback()
                    log.warning("resume_failed", insight_id=row.insight_id, error=repr(exc)[:300])
                    break  # MCP is down: the next pass tries again
            for row in unposted:
                if self.tenants.get(row.tenant_id).approvals_webhook:
                    await self._post_for_approval(conn, row)
            return done

    # ================================================================ reads and helpers
    async def _row(self, conn: AsyncConnection, tenant_id: str, insight_id: str) -> Row[Any] | None:
        query = select(INS).where(INS.c.tenant_id == tenant_id, INS.c.insight_id == insight_id)
        return (await conn.execute(query)).first()

    @staticmethod
    def _where(stmt: Any, row: Row[Any]) -> Any:
        return stmt.where(INS.c.tenant_id == row.tenant_id, INS.c.insight_id == row.insight_id)

    async def _audit(
        self, conn: AsyncConnection, tenant_id: str, insight_id: str, decision: str, via: str, actor: str | None,
        result: str, detail: str | None,
    ) -> None:  # fmt: skip
        await conn.execute(
            insert(tables.decisions).values(
                tenant_id=tenant_id, insight_id=insight_id, decision=decision, via=via, actor=actor, result=result,
                detail=detail, at=_now(),
            )
        )  # fmt: skip

    async def _publish(self, conn: AsyncConnection, row: Row[Any], outcome: str, *, detail: str | None) -> None:
        data = WritebackOutcomeRecorded(
            tenant_id=row.tenant_id, insight_id=row.insight_id, agent_id=row.agent_id,
            target_system=row.target_system, entity_type=row.entity_type, entity_id=row.entity_id,
            outcome=outcome, decided_via=row.decided_via, decided_by=row.decided_by,
            detail=detail[:4000] if detail else None, change_id=row.change_id, version=row.version,
            attempts=row.attempts, occurred_at=_now(),
        )  # fmt: skip
        event = new_event(
            data, tenant_id=row.tenant_id, source=SOURCE, correlation_id=row.correlation_id, subject=row.insight_id,
            id=writeback_outcome_id(row.tenant_id, row.insight_id, outcome),
        )  # fmt: skip
        await outbox.add(conn, event, traceparent=current_traceparent())
        self.metrics.outcomes.labels(row.target_system, outcome, row.decided_via).inc()

    async def audit_trail(self, tenant_id: str, insight_id: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = await self._row(conn, tenant_id, insight_id)
            if row is None:
                return None
            tries = (
                await conn.execute(
                    select(tables.attempts)
                    .where(tables.attempts.c.tenant_id == tenant_id, tables.attempts.c.insight_id == insight_id)
                    .order_by(tables.attempts.c.id)
                )
            ).all()
            decided = (
                await conn.execute(
                    select(tables.decisions)
                    .where(tables.decisions.c.tenant_id == tenant_id, tables.decisions.c.insight_id == insight_id)
                    .order_by(tables.decisions.c.id)
                )
            ).all()
        return {
            "insight": insight_view(row),
            "attempts": [
                {
                    "attempt": a.attempt, "via": a.via, "idempotency_key": a.idempotency_key, "request": a.request,
                    "status": a.status, "response": a.response, "error": a.error, "latency_ms": a.latency_ms,
                    "started_at": a.started_at.isoformat(), "finished_at": _iso(a.finished_at),
                }
                for a in tries
            ],
            "decisions": [
                {"decision": d.decision, "via": d.via, "actor": d.actor, "result": d.result, "detail": d.detail,
                 "at": d.at.isoformat()}
                for d in decided
            ],
        }  # fmt: skip

    async def list_insights(self, tenant_id: str, state: str | None, limit: int) -> list[dict[str, Any]]:
        query = select(INS).where(INS.c.tenant_id == tenant_id)
        if state:
            query = query.where(INS.c.state == state)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(INS.c.created_at, INS.c.insight_id).limit(limit))).all()
        return [insight_view(r) for r in rows]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background decisions (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def _detail(exc: McpError) -> str:
    detail = exc.detail
    return (detail if isinstance(detail, str) else str(detail or exc))[:4000]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def insight_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "tenant_id": row.tenant_id, "insight_id": row.insight_id, "agent_id": row.agent_id,
        "target_system": row.target_system, "entity_type": row.entity_type, "entity_id": row.entity_id,
        "changes": row.changes, "old_values": row.old_values, "reason": row.reason, "confidence": row.confidence,
        "expected_version": row.expected_version, "policy": row.policy, "policy_reason": row.policy_reason,
        "state": row.state, "wait_reason": row.wait_reason, "decided_via": row.decided_via,
        "decided_by": row.decided_by, "decided_at": _iso(row.decided_at), "attempts": row.attempts,
        "change_id": row.change_id, "version": row.version, "detail": row.detail,
        "slack_posted_at": _iso(row.slack_posted_at), "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }  # fmt: skip
