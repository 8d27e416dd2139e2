"""Unity Catalog without HTTP: catalogs, schemas, volumes and table metadata (grants: `grants.py`).

Catalogs, schemas, volumes, table owners and grants live in the workspace store; table columns come from
the SQL engine (each catalog is a DuckDB database). Every read and write checks the caller's privileges.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from apev_workspace.core.store import Store
from apev_workspace.identity.models import Identity, Principal
from apev_workspace.unity_catalog.exceptions import (
    InvalidParameterValue,
    NotEmpty,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from apev_workspace.unity_catalog.grants import Grants

METASTORE_ID = "11111111-2222-3333-4444-555555555555"
RESERVED_CATALOGS = {"system"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")


class TableSource(Protocol):
    """What Unity Catalog needs from the SQL engine: the storage of catalogs and schemas, and table columns."""

    def create_catalog(self, name: str) -> None: ...
    def drop_catalog(self, name: str) -> None: ...
    def create_schema(self, catalog: str, schema: str) -> None: ...
    def drop_schema(self, catalog: str, schema: str) -> None: ...
    def list_tables(self, catalog: str, schema: str | None = None) -> list[dict[str, Any]]: ...
    def drop_table(self, catalog: str, schema: str, name: str) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


def split_name(full_name: str, parts: int, what: str) -> list[str]:
    names = full_name.split(".")
    if len(names) != parts or not all(names):
        raise InvalidParameterValue(f"Invalid {what} name '{full_name}': expected {parts} dot-separated parts")
    return names


def check_name(name: str, what: str) -> str:
    if not name or not _NAME.match(name) or "." in name:
        raise InvalidParameterValue(f"Invalid {what} name '{name}': use letters, digits, underscores and dashes")
    return name


class UnityCatalog(Grants):
    def __init__(self, store: Store, lock: threading.RLock, identity: Identity, volumes_root: Path) -> None:
        self._store = store
        self._lock = lock
        self.identity = identity
        self.volumes_root = volumes_root
        self.catalogs: dict[str, dict[str, Any]] = store.load("uc_catalog")
        self.schemas: dict[str, dict[str, Any]] = store.load("uc_schema")
        self.volumes: dict[str, dict[str, Any]] = store.load("uc_volume")
        self.tables: dict[str, dict[str, Any]] = store.load("uc_table")  # owner and properties; columns: engine
        self.grants: dict[str, dict[str, list[str]]] = store.load("uc_grant")  # "TYPE:full name" -> principal -> privs
        self.engine: TableSource | None = None
        # Whether a securable of the reserved `system` catalog exists (kind, full name): wired by the workspace to
        # the SQL engine's system tables, so grants on `system.billing` can be given and checked.
        self.system_exists: Callable[[str, str], bool] = lambda kind, name: kind == "CATALOG" and name == "system"

    # ------------------------------------------------------------------ privileges
    # ------------------------------------------------------------------ catalogs
    def _obj(self, kind: str, full_name: str, who: Principal, extra: dict[str, Any]) -> dict[str, Any]:
        now = now_ms()
        return {
            "full_name": full_name,
            "owner": who.name,
            "comment": extra.get("comment"),
            "properties": extra.get("properties") or {},
            "created_at": now,
            "created_by": who.name,
            "updated_at": now,
            "updated_by": who.name,
            "metastore_id": METASTORE_ID,
            "securable_type": kind,
            "id": str(uuid.uuid4()),
        }

    def create_catalog(self, who: Principal, name: str, body: dict[str, Any], if_not_exists: bool = False) -> Any:
        check_name(name, "catalog")
        if name.lower() in RESERVED_CATALOGS or name.lower().startswith("apev_"):
            raise InvalidParameterValue(f"Catalog name '{name}' is reserved.")
        if not who.is_admin:
            raise PermissionDenied(f"User {who.name} does not have CREATE CATALOG on Metastore '{METASTORE_ID}'.")
        with self._lock:
            if name in self.catalogs:
                if if_not_exists:
                    return self.catalogs[name]
                raise ResourceAlreadyExists(f"Catalog '{name}' already exists")
            obj = self._obj("CATALOG", name, who, body)
            obj |= {"name": name, "catalog_type": "MANAGED_CATALOG", "isolation_mode": "OPEN"}
            if self.engine is not None:
                self.engine.create_catalog(name)
            self.catalogs[name] = obj
            self._store.put("uc_catalog", name, obj)
            self.create_schema(who, name, "default", {"comment": "Default schema (auto-created)"})
            self.create_schema(who, name, "information_schema", {"comment": "Information schema (auto-created)"})
            return obj

    def get_catalog(self, who: Principal, name: str) -> dict[str, Any]:
        with self._lock:
            obj = self.catalogs.get(name)
            if obj is None:
                raise ResourceDoesNotExist(f"Catalog '{name}' does not exist.")
            if not self.can_see(who, "CATALOG", name):
                raise PermissionDenied(f"User {who.name} does not have USE CATALOG on Catalog '{name}'.")
            return obj

    def list_catalogs(self, who: Principal) -> list[dict[str, Any]]:
        with self._lock:
            return [c for n, c in sorted(self.catalogs.items()) if self.can_see(who, "CATALOG", n)]

    def _update(
        self, kind: str, table: dict[str, dict[str, Any]], key: str, who: Principal, body: dict[str, Any]
    ) -> Any:
        obj = table.get(key)
        if obj is None:
            raise ResourceDoesNotExist(f"{kind.capitalize()} '{key}' does not exist.")
        self._require_manage(who, kind, key)
        if body.get("owner"):
            self._check_principal(body["owner"])
            obj["owner"] = body["owner"]
        if "comment" in body:
            obj["comment"] = body["comment"]
        if body.get("properties") is not None:
            obj["properties"] = body["properties"]
        obj["updated_at"], obj["updated_by"] = now_ms(), who.name
        return obj

    def update_catalog(self, who: Principal, name: str, body: dict[str, Any]) -> Any:
        with self._lock:
            obj = self._update("CATALOG", self.catalogs, name, who, body)
            if body.get("new_name") and body["new_name"] != name:
                raise InvalidParameterValue("Renaming catalogs is not supported by the local workspace")
            self._store.put("uc_catalog", name, obj)
            return obj

    def delete_catalog(self, who: Principal, name: str, force: bool) -> None:
        with self._lock:
            if name not in self.catalogs:
                raise ResourceDoesNotExist(f"Catalog '{name}' does not exist.")
            self._require_manage(who, "CATALOG", name)
            children = [s for s in self.schemas.values() if s["catalog_name"] == name]
            user_schemas = [s for s in children if s["name"] not in ("default", "information_schema")]
            tables = self.engine.list_tables(name) if self.engine is not None else []
            if not force and (user_schemas or tables or any(v["catalog_name"] == name for v in self.volumes.values())):
                raise NotEmpty(f"Cannot delete catalog '{name}': it is not empty. Use force to delete it anyway.")
            for schema in children:
                self._delete_schema_now(schema["full_name"])
            if self.engine is not None:
                self.engine.drop_catalog(name)
            shutil.rmtree(self.volumes_root / name, ignore_errors=True)
            self._drop_grants("CATALOG", name)
            del self.catalogs[name]
            self._store.delete("uc_catalog", name)

    # ------------------------------------------------------------------ schemas
    def create_schema(
        self, who: Principal, catalog: str, name: str, body: dict[str, Any], if_not_exists: bool = False
    ) -> Any:
        check_name(name, "schema")
        with self._lock:
            if catalog not in self.catalogs:
                raise ResourceDoesNotExist(f"Catalog '{catalog}' does not exist.")
            self.authorize(who, "CATALOG", catalog, "CREATE_SCHEMA")
            full = f"{catalog}.{name}"
            if full in self.schemas:
                if if_not_exists:
                    return self.schemas[full]
                raise ResourceAlreadyExists(f"Schema '{full}' already exists")
            obj = self._obj("SCHEMA", full, who, body) | {"name": name, "catalog_name": catalog}
            obj["schema_id"] = obj["id"]
            if self.engine is not None and name != "information_schema":
                self.engine.create_schema(catalog, name)
            self.schemas[full] = obj
            self._store.put("uc_schema", full, obj)
            return obj

    def get_schema(self, who: Principal, full_name: str) -> dict[str, Any]:
        split_name(full_name, 2, "schema")
        with self._lock:
            obj = self.schemas.get(full_name)
            if obj is None:
                raise ResourceDoesNotExist(f"Schema '{full_name}' does not exist.")
            if not self.can_see(who, "SCHEMA", full_name):
                raise PermissionDenied(f"User {who.name} does not have USE SCHEMA on Schema '{full_name}'.")
            return obj

    def list_schemas(self, who: Principal, catalog: str) -> list[dict[str, Any]]:
        with self._lock:
            if catalog not in self.catalogs:
                raise ResourceDoesNotExist(f"Catalog '{catalog}' does not exist.")
            if not self.holds(who, "CATALOG", catalog, "USE_CATALOG") and not self.can_see(who, "CATALOG", catalog):
                raise PermissionDenied(f"User {who.name} does not have USE CATALOG on Catalog '{catalog}'.")
            return [
                s
                for n, s in sorted(self.schemas.items())
                if s["catalog_name"] == catalog and self.can_see(who, "SCHEMA", n)
            ]

    def update_schema(self, who: Principal, full_name: str, body: dict[str, Any]) -> Any:
        with self._lock:
            obj = self._update("SCHEMA", self.schemas, full_name, who, body)
            self._store.put("uc_schema", full_name, obj)
            return obj

    def delete_schema(self, who: Principal, full_name: str, force: bool) -> None:
        catalog, schema = split_name(full_name, 2, "schema")
        with self._lock:
            if full_name not in self.schemas:
                raise ResourceDoesNotExist(f"Schema '{full_name}' does not exist.")
            self._require_manage(who, "SCHEMA", full_name)
            tables = self.engine.list_tables(catalog, schema) if self.engine is not None else []
            volumes = [v for v in self.volumes.values() if v["full_name"].startswith(full_name + ".")]
            if not force and (tables or volumes):
                raise NotEmpty(f"Cannot delete schema '{full_name}': it is not empty. Use force to delete it anyway.")
            self._delete_schema_now(full_name)

    def _delete_schema_now(self, full_name: str) -> None:
        catalog, schema = full_name.split(".")
        for volume in [v for v in self.volumes.values() if v["full_name"].startswith(full_name + ".")]:
            self._delete_volume_now(volume["full_name"])
        for table in [t for t in self.tables if t.startswith(full_name + ".")]:
            self.forget_table(table)
        if self.engine is not None and schema != "information_schema":
            self.engine.drop_schema(catalog, schema)
        self._drop_grants("SCHEMA", full_name)
        del self.schemas[full_name]
        self._store.delete("uc_schema", full_name)

    # ------------------------------------------------------------------ volumes
    def volume_path(self, full_name: str) -> Path:
        return self.volumes_root.joinpath(*full_name.split("."))

    def create_volume(self, who: Principal, body: dict[str, Any], if_not_exists: bool = False) -> Any:
        catalog, schema, name = (str(body.get(k) or "") for k in ("catalog_name", "schema_name", "name"))
        check_name(name, "volume")
        volume_type = body.get("volume_type") or "MANAGED"
        if volume_type != "MANAGED":
            raise InvalidParameterValue(f"volume_type {volume_type} is not supported locally; use MANAGED")
        with self._lock:
            if f"{catalog}.{schema}" not in self.schemas:
                raise ResourceDoesNotExist(f"Schema '{catalog}.{schema}' does not exist.")
            self.authorize(who, "SCHEMA", f"{catalog}.{schema}", "CREATE_VOLUME")
            full = f"{catalog}.{schema}.{name}"
            if full in self.volumes:
                if if_not_exists:
                    return self.volumes[full]
                raise ResourceAlreadyExists(f"Volume '{full}' already exists")
            path = self.volume_path(full)
            path.mkdir(parents=True, exist_ok=True)
            obj = self._obj("VOLUME", full, who, body) | {
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema,
                "volume_type": "MANAGED",
                "storage_location": path.as_uri(),
            }
            obj["volume_id"] = obj["id"]
            self.volumes[full] = obj
            self._store.put("uc_volume", full, obj)
            return obj

    def get_volume(self, who: Principal, full_name: str) -> dict[str, Any]:
        split_name(full_name, 3, "volume")
        with self._lock:
            obj = self.volumes.get(full_name)
            if obj is None:
                raise ResourceDoesNotExist(f"Volume '{full_name}' does not exist.")
            if not self.can_see(who, "VOLUME", full_name):
                raise PermissionDenied(f"User {who.name} does not have READ VOLUME on Volume '{full_name}'.")
            return obj

    def list_volumes(self, who: Principal, catalog: str, schema: str) -> list[dict[str, Any]]:
        with self._lock:
            self.get_schema(who, f"{catalog}.{schema}")
            return [
                v
                for n, v in sorted(self.volumes.items())
                if n.startswith(f"{catalog}.{schema}.") and self.can_see(who, "VOLUME", n)
            ]

    def update_volume(self, who: Principal, full_name: str, body: dict[str, Any]) -> Any:
        with self._lock:
            obj = self._update("VOLUME", self.volumes, full_name, who, body)
            self._store.put("uc_volume", full_name, obj)
            return obj

    def delete_volume(self, who: Principal, full_name: str) -> None:
        with self._lock:
            if full_name not in self.volumes:
                raise ResourceDoesNotExist(f"Volume '{full_name}' does not exist.")
            self._require_manage(who, "VOLUME", full_name)
            self._delete_volume_now(full_name)

    def _delete_volume_now(self, full_name: str) -> None:
        shutil.rmtree(self.volume_path(full_name), ignore_errors=True)
        self._drop_grants("TABLE", full_name)
        self.grants.pop(f"VOLUME:{full_name}", None)
        self._store.delete("uc_grant", f"VOLUME:{full_name}")
        del self.volumes[full_name]
        self._store.delete("uc_volume", full_name)

    # ------------------------------------------------------------------ tables (created through SQL)
    def register_table(self, who: Principal, full_name: str, table_type: str, extra: dict[str, Any]) -> None:
        """Called by the SQL engine after a CREATE TABLE / VIEW: the creator owns it."""
        with self._lock:
            previous = self.tables.get(full_name)
            obj = self._obj("TABLE", full_name, who, extra)
            if previous is not None:  # CREATE OR REPLACE keeps owner, grants, id and column masks
                obj |= {k: previous[k] for k in ("owner", "id", "created_at", "created_by")}
                if previous.get("column_masks"):  # a replace must never unmask a column silently
                    obj["column_masks"] = previous["column_masks"]
            catalog, schema, name = full_name.split(".")
            obj |= {"name": name, "catalog_name": catalog, "schema_name": schema, "table_type": table_type}
            obj |= {k: extra[k] for k in ("view_definition", "partition_columns") if extra.get(k) is not None}
            self.tables[full_name] = obj
            self._store.put("uc_table", full_name, obj)

    def set_column_mask(self, full_name: str, column: str, mask: dict[str, Any] | None) -> None:
        """Record (or with None remove) the column mask of one column; the SQL engine applies it on reads."""
        with self._lock:
            obj = self.tables[full_name]
            masks = dict(obj.get("column_masks") or {})
            if mask is None:
                masks.pop(column, None)
            else:
                masks[column] = mask
            obj["column_masks"] = masks
            self._store.put("uc_table", full_name, obj)

    def set_properties(self, full_name: str, properties: dict[str, str]) -> None:
        """Merge TBLPROPERTIES into the table's metadata (ALTER TABLE ... SET TBLPROPERTIES)."""
        with self._lock:
            obj = self.tables[full_name]
            obj["properties"] = dict(obj.get("properties") or {}) | properties
            self._store.put("uc_table", full_name, obj)

    def forget_table(self, full_name: str) -> None:
        with self._lock:
            if self.tables.pop(full_name, None) is not None:
                self._store.delete("uc_table", full_name)
            if self.grants.pop(f"TABLE:{full_name}", None) is not None:
                self._store.delete("uc_grant", f"TABLE:{full_name}")

    def _sync_tables(self, catalog: str) -> list[dict[str, Any]]:
        """Engine tables joined with their metadata; tables made outside SQL get the catalog owner."""
        if self.engine is None or catalog not in self.catalogs:
            return []
        found = self.engine.list_tables(catalog)
        for info in found:
            full = info["full_name"]
            if full not in self.tables:
                owner = self.catalogs[catalog]["owner"]
                principal = self.identity.principal_by_name(owner) or self.identity.admin_principal()
                self.register_table(principal, full, info["table_type"], {})
        return found

    def _table_info(self, meta: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in meta.items() if k not in ("id", "securable_type", "column_masks")}
        masks = meta.get("column_masks") or {}
        columns = [c | ({"mask": masks[c["name"]]} if c["name"] in masks else {}) for c in info["columns"]]
        out |= {"table_id": meta["id"], "table_type": info["table_type"], "columns": columns}
        if info["table_type"] != "VIEW":
            out["data_source_format"] = "DELTA"
            out["storage_location"] = f"file://{self.volumes_root.parent}/catalogs/{meta['catalog_name']}"
        return out

    def list_tables(self, who: Principal, catalog: str, schema: str) -> list[dict[str, Any]]:
        self.get_schema(who, f"{catalog}.{schema}")
        with self._lock:
            found = [t for t in self._sync_tables(catalog) if t["schema_name"] == schema]
            return [
                self._table_info(self.tables[t["full_name"]], t)
                for t in sorted(found, key=lambda t: str(t["name"]))
                if self.can_see(who, "TABLE", t["full_name"])
            ]

    def get_table(self, who: Principal, full_name: str) -> dict[str, Any]:
        catalog = split_name(full_name, 3, "table")[0]
        with self._lock:
            found = {t["full_name"]: t for t in self._sync_tables(catalog)}
            if full_name not in found:
                raise ResourceDoesNotExist(f"Table '{full_name}' does not exist.")
            self.authorize(who, "TABLE", full_name)
            if not any(self.holds(who, "TABLE", full_name, p) for p in ("SELECT", "MODIFY", "BROWSE", "MANAGE")):
                raise PermissionDenied(f"User {who.name} does not have SELECT on Table '{full_name}'.")
            return self._table_info(self.tables[full_name], found[full_name])

    def delete_table(self, who: Principal, full_name: str) -> None:
        catalog, schema, name = split_name(full_name, 3, "table")
        with self._lock:
            found = {t["full_name"] for t in self._sync_tables(catalog)}
            if full_name not in found:
                raise ResourceDoesNotExist(f"Table '{full_name}' does not exist.")
            self._require_manage(who, "TABLE", full_name)
        if self.engine is not None:
            self.engine.drop_table(catalog, schema, name)
        self.forget_table(full_name)
