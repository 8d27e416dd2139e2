"""The simulator's backend: tenants, keys, integrations, data, write-back, syncs, webhook events. No HTTP.

All methods are synchronous and called from the server's event loop, so each one is atomic: two
concurrent write-backs with one ``Idempotency-Key`` cannot both apply.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apev_mcpsim import data
from apev_mcpsim.exceptions import McpSimError, conflict, invalid, not_found
from apev_mcpsim.tables import EntityTable, check_value, decode_cursor, encode_cursor

NAMESPACE = uuid.UUID("6f1c2b7e-3d4a-4e8b-9a51-0c2d7e9f4a10")
WEBHOOK_EVENTS = ("sync.completed", "data.changed")


@dataclass
class SimConfig:
    seed: int = 42
    admin_key: str | None = None
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    locations: int = 8
    days: int = 1461
    tick_ratio: float = 0.05
    tick_seconds: int = 3600
    webhook_attempts: int = 5
    webhook_backoff: float = 0.5
    webhook_timeout: float = 5.0


class SimClock:
    """Simulated time: starts at ``start`` and moves only when the backend changes something."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: int) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


@dataclass
class Tenant:
    tenant_code: str
    tenant_name: str
    industry: str | None = "dental"
    products: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    status: str = "active"

    def view(self) -> dict[str, Any]:
        return {
            "tenant_code": self.tenant_code,
            "tenant_name": self.tenant_name,
            "industry": self.industry,
            "products": self.products,
            "settings": self.settings,
            "status": self.status,
        }


@dataclass
class Integration:
    integration_id: str
    tenant_code: str
    integration_type: str
    datasource_id: str
    config: dict[str, Any]
    status: str = "active"
    last_sync_at: datetime | None = None
    error_message: str | None = None

    def status_view(self) -> dict[str, Any]:
        return {
            "integration_type": self.integration_type,
            "status": self.status,
            "last_sync_at": self.last_sync_at.isoformat() if self.last_sync_at else None,
            "next_sync_at": (self.last_sync_at + timedelta(hours=1)).isoformat() if self.last_sync_at else None,
            "error_message": self.error_message,
            "extra_data": {"integration_id": self.integration_id, "datasource_id": self.datasource_id},
        }


@dataclass
class Webhook:
    webhook_id: str
    tenant_code: str
    url: str
    secret: str
    events: list[str]

    def view(self) -> dict[str, Any]:
        return {"webhook_id": self.webhook_id, "url": self.url, "events": self.events}


@dataclass
class OutgoingEvent:
    """A webhook to deliver: the event body and the subscription it goes to."""

    webhook: Webhook
    event: dict[str, Any]


class Backend:
    def __init__(self, config: SimConfig, *, on_event: Callable[[OutgoingEvent], None] | None = None) -> None:
        self.config = config
        self.clock = SimClock(config.start)
        self.shape = data.Shape(seed=config.seed, start=config.start, locations=config.locations, days=config.days)
        self.on_event = on_event
        self.tenants: dict[str, Tenant] = {}
        self.keys: dict[str, str] = {}  # tenant-scoped key -> tenant code
        self.key_created: dict[str, datetime] = {}  # key id -> when it was minted (wall clock: keys age for real)
        self.integrations: dict[str, Integration] = {}
        self.tables: dict[tuple[str, str], EntityTable] = {}
        self.idempotency: dict[tuple[str, str], tuple[str, int, dict[str, Any]]] = {}
        self.changes: list[dict[str, Any]] = []
        self.syncs: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.ticks = 0
        self._counter = 0
        for code, name, status in (
            ("default", "Default Dental Group", "active"),
            ("acme", "Acme Dental Partners", "active"),
            ("dormant", "Dormant Dental Co", "inactive"),
        ):
            self.tenants[code] = Tenant(code, name, products=["dentalerp"], status=status)

    def _next_id(self, kind: str, tenant_code: str) -> str:
        self._counter += 1
        return str(uuid.uuid5(NAMESPACE, f"{self.config.seed}:{tenant_code}:{kind}:{self._counter}"))

    # ------------------------------------------------------------------ tenants and keys

    def tenant(self, code: str) -> Tenant:
        tenant = self.tenants.get(code)
        if tenant is None:
            raise McpSimError(404, f"Tenant '{code}' not found")
        return tenant

    def create_tenant(self, tenant: Tenant) -> Tenant:
        if tenant.tenant_code in self.tenants:
            raise conflict(f"Tenant '{tenant.tenant_code}' already exists")
        self.tenants[tenant.tenant_code] = tenant
        return tenant

    def mint_key(self, tenant_code: str) -> dict[str, Any]:
        self.tenant(tenant_code)
        key = f"{tenant_code}_sk_{secrets.token_hex(16)}"
        self.keys[key] = tenant_code
        self.key_created[_key_id(key)] = datetime.now(UTC)
        return {"tenant_code": tenant_code, "api_key": key, "key_id": _key_id(key)}

    def list_keys(self, tenant_code: str) -> list[dict[str, Any]]:
        """The tenant's valid keys, oldest first, without the secret."""
        self.tenant(tenant_code)
        found = [
            {"tenant_code": code, "key_id": _key_id(key), "created_at": self.key_created[_key_id(key)].isoformat()}
            for key, code in self.keys.items()
            if code == tenant_code
        ]
        return sorted(found, key=lambda k: (k["created_at"], k["key_id"]))

    def revoke_key(self, tenant_code: str, key_id: str) -> None:
        """The key is refused from now on (403 on every route)."""
        self.tenant(tenant_code)
        for key, code in list(self.keys.items()):
            if code == tenant_code and _key_id(key) == key_id:
                del self.keys[key]
                self.key_created.pop(key_id, None)
                return
        raise not_found(f"API key '{key_id}'")

    def is_admin(self, key: str) -> bool:
        admin = self.config.admin_key
        return admin is not None and secrets.compare_digest(key.encode(), admin.encode())

    def key_valid_for(self, key: str, tenant_code: str) -> bool:
        return self.is_admin(key) or self.keys.get(key) == tenant_code

    # ------------------------------------------------------------------ integrations and data

    def register(
        self, tenant_code: str, integration_type: str, datasource_id: str, config: dict[str, Any]
    ) -> tuple[Integration, bool]:
        integration_id = str(uuid.uuid5(NAMESPACE, f"{tenant_code}:{datasource_id}"))
        existing = self.integrations.get(integration_id)
        if existing is not None:
            if existing.integration_type != integration_type:
                raise conflict(
                    f"datasource_id '{datasource_id}' is already registered as '{existing.integration_type}'"
                )
            return existing, False
        integration = Integration(integration_id, tenant_code, integration_type, datasource_id, config)
        self.integrations[integration_id] = integration
        return integration, True

    def integration(self, tenant_code: str, integration_id: str) -> Integration:
        integration = self.integrations.get(integration_id)
        if integration is None or integration.tenant_code != tenant_code:
            raise not_found(f"Integration '{integration_id}'")
        return integration

    def deregister(self, tenant_code: str, integration_id: str) -> None:
        """The integration is gone: no data, no status, and its id answers 404."""
        self.integration(tenant_code, integration_id)
        del self.integrations[integration_id]

    def statuses(self, tenant_code: str, integration_type: str | None) -> list[dict[str, Any]]:
        return [
            i.status_view()
            for i in self.integrations.values()
            if i.tenant_code == tenant_code and (integration_type is None or i.integration_type == integration_type)
        ]

    def table(self, tenant_code: str, entity_type: str) -> EntityTable:
        if entity_type not in data.ENTITY_FIELDS:
            raise not_found(f"Entity type '{entity_type}'")
        table = self.tables.get((tenant_code, entity_type))
        if table is None:
            table = EntityTable(entity_type, data.generate(entity_type, tenant_code, self.shape))
            self.tables[(tenant_code, entity_type)] = table
        return table

    def page(
        self,
        tenant_code: str,
        integration_id: str,
        entity_type: str,
        *,
        updated_since: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        integration = self.integration(tenant_code, integration_id)
        allowed = data.INTEGRATION_ENTITIES[integration.integration_type]
        if entity_type not in allowed:
            raise invalid(f"entity_type '{entity_type}' is not served by {integration.integration_type}; use {allowed}")
        table = self.table(tenant_code, entity_type)
        order = table.order()
        start = 0
        if updated_since is not None:
            start = bisect.bisect_right(order, (data.ts(updated_since), "\U0010ffff"))
        if cursor is not None:
            start = max(start, bisect.bisect_right(order, decode_cursor(entity_type, cursor)))
        keys = order[start : start + limit]
        more = start + limit < len(order)
        return {
            "data": [dict(table.rows[rid]) for _, rid in keys],
            "next_cursor": encode_cursor(entity_type, keys[-1]) if more and keys else None,
        }

    def current(self, tenant_code: str, entity_type: str, location: str | None, limit: int) -> list[data.Record]:
        table = self.table(tenant_code, entity_type)
        rows = (r for _, r in sorted(table.rows.items()))
        return [dict(r) for r in rows if location is None or r["PRACTICE_LOCATION"] == location][:limit]

    def tick(self, tenant_code: str | None, entity_types: list[str] | None, ratio: float | None) -> dict[str, Any]:
        """Change a share of records: new versions with a later UPDATED_AT, deterministic given the seed."""
        self.ticks += 1
        now = data.ts(self.clock.advance(self.config.tick_seconds))
        share = self.config.tick_ratio if ratio is None else ratio
        codes = [tenant_code] if tenant_code else sorted({t for t, _ in self.tables})
        changed: dict[str, dict[str, int]] = {}
        for code in codes:
            self.tenant(code)
            for entity in entity_types or list(data.ENTITY_FIELDS):
                table = self.table(code, entity)
                rng = random.Random(f"{self.config.seed}:{code}:{entity}:tick:{self.ticks}")
                ids = sorted(table.rows)
                picked = rng.sample(ids, min(len(ids), max(1, round(len(ids) * share)))) if share > 0 else []
                for rid in picked:
                    row = table.rows[rid]
                    data.nudge(rng, row)
                    row["VERSION"] = str(int(row["VERSION"]) + 1)
                    row["UPDATED_AT"] = now
                table.touched()
                changed.setdefault(code, {})[entity] = len(picked)
            self._emit(code, "data.changed", {"tick": self.ticks, "updated_at": now, "changed": changed[code]})
        return {"tick": self.ticks, "clock": now, "changed": changed}

    # ------------------------------------------------------------------ write-back

    def update(
        self, tenant_code: str, integration_type: str, body: dict[str, Any], idempotency_key: str
    ) -> tuple[int, dict[str, Any]]:
        """Apply a write-back once per key; the same key always answers the same status and body."""
        fingerprint = hashlib.sha256(
            json.dumps([integration_type, body], sort_keys=True, default=str).encode()
        ).hexdigest()
        stored = self.idempotency.get((tenant_code, idempotency_key))
        if stored is not None:
            if stored[0] != fingerprint:
                raise invalid(f"Idempotency-Key '{idempotency_key}' was already used with a different request")
            return stored[1], stored[2]
        try:
            status, result = 200, self._apply(tenant_code, integration_type, body, idempotency_key)
        except McpSimError as exc:
            if exc.status not in (404, 409):
                raise  # validation errors are not stored: the caller may fix the request and reuse the key
            status, result = exc.status, exc.body()
        self.idempotency[(tenant_code, idempotency_key)] = (fingerprint, status, result)
        return status, result

    def _apply(self, tenant_code: str, integration_type: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        entity_type, entity_id = body["entity_type"], body["entity_id"]
        if entity_type not in data.INTEGRATION_ENTITIES[integration_type]:
            raise invalid(f"entity_type '{entity_type}' cannot be written through {integration_type}")
        table = self.table(tenant_code, entity_type)
        row = table.rows.get(entity_id)
        if row is None:
            raise not_found(f"{entity_type} '{entity_id}'")
        changes: dict[str, Any] = body["changes"]
        read_only = {table.id_field, *data.SYSTEM_FIELDS}
        fields = {name.upper() for name in changes}
        bad = sorted(f for f in fields if f not in row or f in read_only)
        if bad:
            raise invalid(f"Unknown or read-only field(s) for {entity_type}: {', '.join(bad)}")
        new_values = {name.upper(): check_value(entity_type, name.upper(), v) for name, v in changes.items()}
        expected = body.get("expected_version")
        if expected is not None and int(row["VERSION"]) != expected:
            raise conflict(f"{entity_type} '{entity_id}' is at version {row['VERSION']}, expected {expected}")
        previous = int(row["VERSION"])
        applied_at = data.ts(self.clock.advance(1))
        for name, value in new_values.items():
            row[name] = value  # type: ignore[assignment]  # a null clears the field, as in the warehouse
        row["VERSION"] = str(previous + 1)
        row["UPDATED_AT"] = applied_at
        table.touched()
        change_id = self._next_id("change", tenant_code)
        result = {
            "change_id": change_id,
            "status": "applied",
            "entity_type": entity_type,
            "entity_id": entity_id,
            "version": previous + 1,
            "applied_at": applied_at,
        }
        self.changes.append({
            **result,
            "tenant_code": tenant_code,
            "integration_type": integration_type,
            "idempotency_key": key,
            "changes": new_values,
            "reason": body["reason"],
            "previous_version": previous,
        })  # fmt: skip
        self._emit(tenant_code, "data.changed", {"integration_type": integration_type, **result})
        return result

    def changes_for(self, tenant_code: str, integration_type: str, limit: int) -> list[dict[str, Any]]:
        rows = [
            c for c in self.changes if c["tenant_code"] == tenant_code and c["integration_type"] == integration_type
        ]
        return rows[-limit:]

    # ------------------------------------------------------------------ syncs

    def run_sync(self, tenant_code: str, request: dict[str, Any]) -> dict[str, Any]:
        integration_type = request["integration_type"]
        allowed = data.INTEGRATION_ENTITIES[integration_type]
        entity_types = request.get("entity_types") or list(allowed)
        bad = [e for e in entity_types if e not in allowed]
        if bad:
            raise invalid(f"entity_types {bad} are not served by {integration_type}; use {list(allowed)}")
        locations = set(request.get("location_ids") or [])
        started = self.clock.advance(1)
        processed = sum(
            1
            for e in entity_types
            for r in self.table(tenant_code, e).rows.values()
            if not locations or r["PRACTICE_LOCATION"] in locations
        )
        completed = self.clock.advance(1)
        sync_id = self._next_id("sync", tenant_code)
        run = {
            "sync_id": sync_id,
            "status": "completed",
            "started_at": started.isoformat(),
            "completed_at": completed.isoformat(),
            "records_processed": processed,
            "errors": [],
        }
        self.syncs[sync_id] = {**run, "tenant_code": tenant_code}
        for integration in self.integrations.values():
            if integration.tenant_code == tenant_code and integration.integration_type == integration_type:
                integration.last_sync_at = completed
        self._emit(tenant_code, "sync.completed", {"integration_type": integration_type, **run})
        return run

    def sync(self, tenant_code: str, sync_id: str) -> dict[str, Any]:
        run = self.syncs.get(sync_id)
        if run is None or run["tenant_code"] != tenant_code:
            raise not_found(f"Sync run '{sync_id}'")
        return {k: v for k, v in run.items() if k != "tenant_code"}

    # ------------------------------------------------------------------ webhooks

    def subscribe(self, tenant_code: str, url: str, secret: str, events: list[str] | None) -> Webhook:
        unknown = sorted(set(events or []) - set(WEBHOOK_EVENTS))
        if unknown:
            raise invalid(f"Unknown webhook event(s) {unknown}; known: {list(WEBHOOK_EVENTS)}")
        hook = Webhook(self._next_id("webhook", tenant_code), tenant_code, url, secret, list(events or WEBHOOK_EVENTS))
        self.webhooks[hook.webhook_id] = hook
        return hook

    def unsubscribe(self, tenant_code: str, webhook_id: str) -> None:
        hook = self.webhooks.get(webhook_id)
        if hook is None or hook.tenant_code != tenant_code:
            raise not_found(f"Webhook '{webhook_id}'")
        del self.webhooks[webhook_id]

    def _emit(self, tenant_code: str, event_type: str, payload: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        for hook in self.webhooks.values():
            if hook.tenant_code == tenant_code and event_type in hook.events:
                event = {
                    "id": self._next_id("event", tenant_code),
                    "type": event_type,
                    "tenant_code": tenant_code,
                    "created_at": datetime.now(UTC).isoformat(),
                    "data": payload,
                }
                self.on_event(OutgoingEvent(hook, event))


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]
