"""Rotation of a tenant's credentials without a failed run, two kinds:

- `mcp_api_key`: the pipeline's tenant-scoped MCP key (`mcp_api_key` in the tenant's secret scope);
- `sp_secret`: the OAuth secret of the tenant's pipeline service principal (`databricks_client_id` and
  `databricks_client_secret` in the same scope), for code that signs in as that principal (OAuth M2M).

A new credential is minted and written to the tenant's secret scope (tasks read it when they start); the old
ones stay valid for a grace period, so a run that read one before the rotation finishes with it; then they are
revoked (MCP keys) or deleted (OAuth secrets). The minted secret never touches the database.

A rotation is a row in `ingest_rotations` (requested -> stored -> done), resumed by the credentials loop
after a crash: a credential minted but not stored is simply one more old one, removed with the others.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import structlog
from sqlalchemy import insert, select, update

from apev_contracts import naming
from apev_contracts.ids import deterministic_id
from apev_ingest import gateway as gw
from apev_ingest import tables as t
from apev_runtime.errors import PermanentError

if TYPE_CHECKING:
    from apev_ingest.service import IngestService

log = structlog.get_logger("apev.ingest")


Kind = Literal["mcp_api_key", "sp_secret"]
KINDS: tuple[Kind, ...] = ("mcp_api_key", "sp_secret")
CLIENT_ID_KEY, CLIENT_SECRET_KEY = "databricks_client_id", "databricks_client_secret"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Rotation:
    def __init__(self, service: IngestService) -> None:
        self.s = service

    async def _code(self, tenant: str) -> str | None:
        async with self.s.db.engine.connect() as conn:
            row = (await conn.execute(select(t.steps.c.detail).where(
                t.steps.c.scope == f"tenant:{tenant}", t.steps.c.step == "mcp_tenant"))).first()  # fmt: skip
        return str(row.detail["code"]) if row is not None else None

    async def _principal(self, tenant: str) -> tuple[str, str] | None:
        """(SCIM id, application id) of the tenant's pipeline principal, None when there is none."""
        name = naming.pipeline_principal(tenant)
        return await self.s.databricks.call(lambda w: gw.service_principal_ids(w, name))

    async def request(
        self, tenant: str, kind: Kind = "mcp_api_key", *, cause: str = "http", request_id: str | None = None
    ) -> str:
        """Record a rotation (idempotent on its id) and run it; its progress is `rotation(request_id)`."""
        if kind not in KINDS:
            raise PermanentError(f"kind: {kind!r} is not a credential kind; expected one of {list(KINDS)}")
        if await self._code(tenant) is None:
            raise PermanentError(f"tenant {tenant!r} has no credentials to rotate (no data source provisioned)")
        request_id = request_id or str(uuid.uuid4())
        async with self.s.db.transaction() as tx:
            known = (await tx.execute(select(t.rotations.c.request_id).where(
                t.rotations.c.request_id == request_id))).first()  # fmt: skip
            if known is None:
                now = _now()
                await tx.execute(insert(t.rotations).values(
                    request_id=request_id, tenant_id=tenant, kind=kind, cause=cause, state="requested",
                    old_key_ids=[], created_at=now, updated_at=now,
                ))  # fmt: skip
        await self.advance(request_id)
        return request_id

    async def advance(self, request_id: str, now: datetime | None = None) -> str:
        """One rotation as far as it can go now; its state."""
        now = now or _now()
        async with self.s.db.engine.connect() as conn:
            row = (await conn.execute(select(t.rotations).where(t.rotations.c.request_id == request_id))).first()
        if row is None:
            raise PermanentError(f"no rotation {request_id!r}")
        code = await self._code(row.tenant_id)
        if code is None:
            return await self._set(request_id, state="done", error="tenant offboarded")
        if row.kind == "sp_secret":
            return await self._advance_sp(row, now)
        if row.state == "requested":
            scope = naming.secret_scope(row.tenant_id)
            async with self.s.mcp.client() as mcp:
                before = [k.key_id for k in await mcp.list_api_keys(code)]
                minted = await mcp.create_api_key(code)
            await self.s.databricks.call(lambda w: gw.put_secret(w, scope, "mcp_api_key", minted.api_key))
            grace = timedelta(seconds=self.s.settings.credential_grace_seconds)
            await self._set(request_id, state="stored", new_key_id=minted.key_id, old_key_ids=before,
                            retire_after=now + grace)  # fmt: skip
            log.info("mcp_key_rotated", request_id=request_id, tenant_id=row.tenant_id, key_id=minted.key_id)
            return "stored"
        if row.state == "stored" and row.retire_after is not None and _aware(row.retire_after) <= now:
            async with self.s.mcp.client() as mcp:
                # every key but the new one: also one minted by an attempt that died before storing it
                stale = [k.key_id for k in await mcp.list_api_keys(code) if k.key_id != row.new_key_id]
                for key_id in stale:
                    await mcp.revoke_api_key(code, key_id)
            log.info("mcp_keys_revoked", request_id=request_id, tenant_id=row.tenant_id, keys=len(stale))
            return await self._set(request_id, state="done", old_key_ids=sorted(set(row.old_key_ids) | set(stale)))
        return str(row.state)

    async def _advance_sp(self, row: Any, now: datetime) -> str:
        request_id, tenant = row.request_id, row.tenant_id
        ids = await self._principal(tenant)
        if ids is None:
            return await self._set(request_id, state="done", error="the pipeline principal is gone")
        sp_id, app_id = ids
        if row.state == "requested":
            scope = naming.secret_scope(tenant)

            def mint(w: Any) -> tuple[list[str], str]:
                before = [i for i, _ in gw.sp_secrets(w, sp_id)]
                secret_id, value = gw.create_sp_secret(w, sp_id)
                gw.put_secret(w, scope, CLIENT_ID_KEY, app_id)
                gw.put_secret(w, scope, CLIENT_SECRET_KEY, value)  # the value leaves this function only here
                return before, secret_id

            before, secret_id = await self.s.databricks.call(mint)
            grace = timedelta(seconds=self.s.settings.credential_grace_seconds)
            await self._set(request_id, state="stored", new_key_id=secret_id, old_key_ids=before,
                            retire_after=now + grace)  # fmt: skip
            log.info("sp_secret_rotated", request_id=request_id, tenant_id=tenant, secret_id=secret_id)
            return "stored"
        if row.state == "stored" and row.retire_after is not None and _aware(row.retire_after) <= now:

            def retire(w: Any) -> list[str]:
                stale = [i for i, _ in gw.sp_secrets(w, sp_id) if i != row.new_key_id]
                return [i for i in stale if gw.delete_sp_secret(w, sp_id, i)]

            stale = await self.s.databricks.call(retire)
            log.info("sp_secrets_deleted", request_id=request_id, tenant_id=tenant, secrets=len(stale))
            return await self._set(request_id, state="done", old_key_ids=sorted(set(row.old_key_ids) | set(stale)))
        return str(row.state)

    async def _set(self, request_id: str, **values: Any) -> str:
        async with self.s.db.transaction() as tx:
            await tx.execute(update(t.rotations).where(t.rotations.c.request_id == request_id).values(
                updated_at=_now(), **values))  # fmt: skip
        return str(values.get("state", ""))

    async def rotation(self, request_id: str, tenant: str) -> dict[str, Any] | None:
        async with self.s.db.engine.connect() as conn:
            row = (await conn.execute(select(t.rotations).where(
                t.rotations.c.request_id == request_id, t.rotations.c.tenant_id == tenant))).first()  # fmt: skip
        if row is None:
            return None
        return {
            "request_id": row.request_id,
            "tenant_id": row.tenant_id,
            "kind": row.kind,
            "cause": row.cause,
            "state": row.state,
            "new_key_id": row.new_key_id,
            "old_key_ids": list(row.old_key_ids),
            "retire_after": _aware(row.retire_after).isoformat() if row.retire_after else None,
            "error": row.error,
        }

    async def credentials(self, tenant: str, now: datetime | None = None) -> list[dict[str, Any]]:
        """The tenant's MCP keys and its pipeline principal's OAuth secrets, oldest first, with their age and
        whether they are due for rotation."""
        now = now or _now()
        code = await self._code(tenant)
        if code is None:
            return []
        async with self.s.mcp.client() as mcp:
            keys = [("mcp_api_key", k.key_id, _aware(k.created_at)) for k in await mcp.list_api_keys(code)]
        ids = await self._principal(tenant)
        if ids is not None:
            listed = await self.s.databricks.call(lambda w: gw.sp_secrets(w, ids[0]))
            keys += [("sp_secret", i, _aware(datetime.fromisoformat(c.replace("Z", "+00:00")))) for i, c in listed]
        async with self.s.db.engine.connect() as conn:
            pending = list(await conn.execute(select(t.rotations).where(
                t.rotations.c.tenant_id == tenant, t.rotations.c.state == "stored")))  # fmt: skip
        retiring = {(r.kind, k): _aware(r.retire_after) for r in pending for k in r.old_key_ids if r.retire_after}
        max_age = self.s.settings.credential_max_age_days
        out = []
        for kind, key_id, created in sorted(keys, key=lambda k: k[2]):
            age = (now - created).total_seconds() / 86400
            retire = retiring.get((kind, key_id))
            out.append({
                "kind": kind,
                "key_id": key_id,
                "created_at": created.isoformat(),
                "age_days": round(age, 3),
                "state": "retiring" if retire else "active",
                "revoke_after": retire.isoformat() if retire else None,
                "rotation_due": retire is None and age > max_age,
            })  # fmt: skip
        return out

    async def check(self, now: datetime | None = None) -> dict[str, int]:
        """The credentials loop: resume and finish rotations, start one for every tenant credential too old."""
        now = now or _now()
        async with self.s.db.engine.connect() as conn:
            open_ = [r.request_id for r in await conn.execute(select(t.rotations.c.request_id).where(
                t.rotations.c.state != "done"))]  # fmt: skip
            tenants = [r.scope.split(":", 1)[1] for r in await conn.execute(select(t.steps.c.scope).where(
                t.steps.c.step == "mcp_tenant"))]  # fmt: skip
        for request_id in open_:
            await self.advance(request_id, now)
        started = 0
        for tenant in tenants:
            listed = await self.credentials(tenant, now)
            for kind in KINDS:
                due = [c for c in listed if c["kind"] == kind and c["rotation_due"]]
                if due:  # one rotation per too-old credential, whatever the number of loops or replicas
                    parts = (tenant, due[0]["key_id"]) if kind == "mcp_api_key" else (tenant, kind, due[0]["key_id"])
                    rid = deterministic_id("rotation", *parts)
                    await self.request(tenant, kind, cause="age", request_id=rid)
                    started += 1
        return {"advanced": len(open_), "started": started}
